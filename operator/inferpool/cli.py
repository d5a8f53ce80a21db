"""The `inferpool` command line.

Each area registers its own subcommands from a module of its own, so this file stays a
table of contents. Imports are lazy: `inferpool sandbox` must not pay for kopf.
"""

from __future__ import annotations

import argparse
import importlib
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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferpool",
        description="Place model-serving replicas across NVIDIA, TPU and Neuron node pools.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).register(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
