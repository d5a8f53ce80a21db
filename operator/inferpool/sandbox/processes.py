"""Start, watch and stop the sandbox's own processes, by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(binary: Path, args: list[str], log_file: Path,
          env: Mapping[str, str] | None = None) -> int:
    """Start a detached process (it outlives the CLI) logging to `log_file`; return its PID.
    `env` is added to this process's environment."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [str(binary), *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, env={**os.environ, **env} if env else None,
        )
    return proc.pid


def is_ours(pid: int, binary: str) -> bool:
    """True when `pid` still runs `binary` (a PID can be reused after the process died)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return Path(exe.removesuffix(" (deleted)")).name == binary and state != "Z"


def stop(pid: int, binary: str, grace: float = 10.0) -> None:
    if not is_ours(pid, binary):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_ours(pid, binary):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    # Our own children (started by this same Python process, as in tests) must be waited for,
    # or they linger as zombies; for others this is a no-op.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
