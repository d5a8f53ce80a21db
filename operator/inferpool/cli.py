"""The `inferpool` command line.

Each area registers its own subcommands from a module of its own, so this file stays a
table of contents. Only the chosen subcommand's module is imported: `inferpool --help` and
`inferpool sandbox ...` must not pay for kopf, the API client or the solver.

Errors a user can fix (no kubeconfig, an unreachable API server, a bad flag or INFERPOOL_*
value, a missing file) are one line on stderr and exit code 1 (2 for usage), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# subcommand -> (module with `register(parser)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("inferpool.controller.cli", "run the operator against the current cluster"),
    "sandbox": ("inferpool.sandbox.cli", "local control plane with simulated accelerator pools"),
    "demo": ("inferpool.demo", "the whole story on a local sandbox: placement, a load spike, "
             "a pool failure"),
    "crds": ("inferpool.api.cli", "print or write the CustomResourceDefinitions"),
    "simulate": ("inferpool.simulate.cli", "replay a demand/failure scenario through the real "
                 "engine and compare policies"),
    "snapshot": ("inferpool.controller.inspect_cli", "save the operator's inputs as JSON"),
    "plan": ("inferpool.controller.inspect_cli",
             "print the placement the engine would choose, and why (writes nothing)"),
    "status": ("inferpool.controller.inspect_cli", "print InferencePools and node pools"),
    "model-server": ("inferpool.model_server.cli", "a stand-in model server: OpenAI-compatible "
                     "answers at a real, bounded throughput, vLLM's metrics"),
}


def build_parser(argv: Sequence[str] = (), every: bool = False) -> argparse.ArgumentParser:
    """The parser, with the flags of the subcommand named in `argv` only (or of every one:
    tests and the docs check use that)."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="inferpool",
        description="Place model-serving replicas across NVIDIA, TPU and Neuron node pools.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if every or name == chosen:
            importlib.import_module(module).register(command_parser)
    return parser


def deepest_parser(parser: argparse.ArgumentParser, argv: Sequence[str]
                   ) -> argparse.ArgumentParser:
    """The (sub)parser the words of `argv` lead to, so a bad flag prints that one's usage."""
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args, unknown = parser.parse_known_args(words)
    if unknown:
        deepest_parser(parser, words).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message, code = describe(exc)
        if message is None:
            raise  # a bug, not a user's mistake: the traceback is what we need to fix it
        if code == 2:
            deepest_parser(parser, words).error(message)
        print(f"inferpool: error: {message}", file=sys.stderr)
        return code
    return result


def describe(exc: BaseException) -> tuple[str | None, int]:
    """(one line for the user, exit code) for errors a user can fix; (None, 1) for bugs.

    Only looks at libraries already imported: a command that never loaded the API client
    cannot have failed inside it."""
    from inferpool.controller.settings import SettingsError

    if isinstance(exc, SettingsError):
        return str(exc), 2 if exc.from_flag else 1
    modules = sys.modules
    config = modules.get("kubernetes.config.config_exception")
    if config is not None and isinstance(exc, config.ConfigException):
        return (f"no usable Kubernetes configuration ({exc}): pass --kubeconfig FILE, set "
                "KUBECONFIG, or run inside a pod", 1)
    urllib3 = modules.get("urllib3.exceptions")
    if urllib3 is not None and isinstance(exc, urllib3.MaxRetryError | urllib3.HTTPError):
        reason = getattr(exc, "reason", None) or exc
        url = getattr(getattr(exc, "pool", None), "host", None)
        where = f" at {url}" if url else ""
        return (f"cannot reach the Kubernetes API server{where}: {reason}; is the cluster "
                "running and the kubeconfig's server address right?", 1)
    api = modules.get("kubernetes.client.exceptions")
    if api is not None and isinstance(exc, api.ApiException):
        return f"the API server refused: {exc.status} {exc.reason}: {str(exc.body)[:300]}", 1
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return f"{exc.strerror}: {exc.filename}", 1
    return None, 1


if __name__ == "__main__":
    sys.exit(main())
