"""`inferpool run` arguments; the operator itself (kopf and all) is imported only when it runs."""

from __future__ import annotations

import argparse

from inferpool.controller.settings import add_flags, given_flags, load


def register(parser: argparse.ArgumentParser) -> None:
    add_flags(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = load(given_flags(args))  # before kopf is imported: a bad value fails at once
    from inferpool.controller.run import main

    return main(settings)
