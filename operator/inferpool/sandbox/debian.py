"""Debian packages the sandbox needs, installed on first use (as root), so a fresh machine works."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

from inferpool.sandbox.errors import SandboxError


def ensure_commands(commands: Mapping[str, str]) -> None:
    """Make every command of `commands` (command -> the Debian package that ships it) exist on
    PATH (or in /usr/sbin, which a non-login PATH may lack), installing the missing packages."""
    missing = sorted({package for command, package in commands.items() if not _found(command)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SandboxError(f"missing {', '.join(missing)} and not root to apt-get them: "
                           f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        # Stale package lists are the usual cause; refresh once and retry.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SandboxError(f"apt-get install {' '.join(missing)} failed:\n{done.stderr}")
    still = [command for command in commands if not _found(command)]
    if still:
        raise SandboxError(f"installed {', '.join(missing)} but found no {', '.join(still)}")


def command_path(command: str) -> str:
    found = _found(command)
    if found is None:
        raise SandboxError(f"{command} is not installed")
    return found


def _found(command: str) -> str | None:
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
