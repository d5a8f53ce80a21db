"""Where a sandbox keeps its state (`~/.cache/inferpool/sandboxes/NAME/state.json`) and what it
records: ports, process ids, paths. Read by the control of the processes and by the node tools
alike, so neither imports the other for it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inferpool.sandbox import binaries, processes


def state_root() -> Path:
    if env := os.environ.get("INFERPOOL_STATE"):
        return Path(env)
    return binaries.cache_root() / "sandboxes"


@dataclass
class SandboxState:
    name: str
    directory: str
    kubeconfig: str
    server: str
    pools_file: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0

    @property
    def path(self) -> Path:
        return Path(self.directory)

    @property
    def log_dir(self) -> Path:
        """The components' logs and the API server's audit log (audit.LOG_NAME)."""
        return self.path / "logs"

    def alive(self) -> dict[str, bool]:
        return {c: processes.is_ours(pid, c) for c, pid in self.pids.items()}

    def save(self) -> None:
        (self.path / "state.json").write_text(json.dumps(asdict(self), indent=2))


def sandbox_dir(name: str) -> Path:
    return state_root() / name


def load_state(name: str) -> SandboxState | None:
    path = sandbox_dir(name) / "state.json"
    if not path.is_file():
        return None
    return SandboxState(**json.loads(path.read_text()))
