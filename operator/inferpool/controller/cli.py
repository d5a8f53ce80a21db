"""`inferpool run` arguments; the operator itself (kopf and all) is imported only when it runs."""

from __future__ import annotations

import argparse

from inferpool.controller.settings import add_arguments


def register(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from inferpool.controller.run import main

    return main(args)
