"""`inferpool crds`: print the CustomResourceDefinitions, or write them to a directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inferpool.api import crd


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="write crds/<plural>.<group>.yaml files here instead of stdout")
    parser.add_argument("--allow-privileged-templates", action="store_true",
                        help="leave the pod template security rules to the operator (install "
                             "this variant only together with --allow-privileged-namespaces; "
                             "see docs/api.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    relaxed: bool = args.allow_privileged_templates
    if args.output_dir is None:
        sys.stdout.write(crd.render(crd.generate_crds(allow_privileged_templates=relaxed)))
        return 0
    for path in crd.write(args.output_dir, allow_privileged_templates=relaxed):
        print(path, file=sys.stderr)
    return 0
