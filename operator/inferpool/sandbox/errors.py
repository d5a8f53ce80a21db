"""Errors the sandbox reports to its user in one clear line (or a few)."""


class SandboxError(Exception):
    """Something the user can act on; the CLI prints it without a traceback."""
