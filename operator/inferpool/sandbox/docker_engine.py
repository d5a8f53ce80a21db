"""A Docker engine of our own: Debian's `dockerd`, started by us (no service manager), with its
own data root, socket and pidfile under the cache (`~/.cache/inferpool/docker/`), so images and
build layers survive between runs and nothing of a system Docker is touched.

    engine = DockerEngine.ensure(log)      # installs docker.io on first use, starts dockerd
    engine.docker("images")                # the docker CLI pointed at our socket
    engine.stop()                          # only if this process started it (`engine.started`)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inferpool.sandbox import binaries, debian
from inferpool.sandbox.errors import SandboxError

Log = Callable[[str], None]
PACKAGES = {"dockerd": "docker.io", "docker": "docker.io"}
START_TIMEOUT_S = 60.0


def engine_root() -> Path:
    return binaries.cache_root() / "docker"


@dataclass(frozen=True)
class DockerEngine:
    root: Path
    started: bool  # by this process: then stop() ends it

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "docker.pid"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    @classmethod
    def ensure(cls, log: Log = print, root: Path | None = None) -> DockerEngine:
        """Our dockerd, already running or started now."""
        debian.ensure_commands(PACKAGES)
        root = root or engine_root()
        root.mkdir(parents=True, exist_ok=True)
        running = cls(root, started=False)
        if running.responds():
            return running
        engine = cls(root, started=True)
        engine._start(log)
        return engine

    def responds(self) -> bool:
        if not self.socket.exists():
            return False
        done = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                              env=self.env, capture_output=True, check=False, timeout=30)
        return done.returncode == 0

    def docker(self, *args: str, check: bool = True, timeout: float | None = None
               ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine; on failure, its stderr is the error."""
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              check=False, timeout=timeout)
        if check and done.returncode != 0:
            raise SandboxError(f"docker {' '.join(args[:3])} ... failed:\n{done.stderr.strip()}")
        return done

    def _start(self, log: Log) -> None:
        self._kill_stale()
        self.socket.unlink(missing_ok=True)
        log(f"starting dockerd (data root {self.root / 'data'})")
        logfile = (self.root / "dockerd.log").open("ab")
        # exec-root short and ours: containerd's socket paths must stay under 108 bytes.
        subprocess.Popen(
            [debian.command_path("dockerd"), "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--host", f"unix://{self.socket}",
             "--pidfile", str(self.pidfile)],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.responds():
                return
            time.sleep(0.5)
        tail = (self.root / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
        raise SandboxError("dockerd did not answer within "
                           f"{START_TIMEOUT_S:.0f} s; its log ends:\n" + "\n".join(tail))

    def _kill_stale(self) -> None:
        """A dockerd of ours that no longer answers (or left its pidfile): end it, or the new one
        refuses to start on the same pidfile."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        self._wait_gone(pid, 20.0)
        self.pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        if not self.started:
            return
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            self._wait_gone(pid, 30.0)

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
