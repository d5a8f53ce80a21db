"""README.md and docs/ agree with the repository: every link and named file exists, every
`inferpool ...` command line shown is accepted by the real parser (flags, choices and values:
parsed, not run), and every `make` target shown exists."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        REPO / "charts" / "inferpool-operator" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NAMED_FILE = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:md|py|yaml|yml|json|toml|lock|tsv))`")
NAMED_DOC = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")  # in prose, too
# Where a file named in prose may live: beside the doc, the repository, the package.
ROOTS = ("", "operator/inferpool", "charts/inferpool-operator")
GENERATED = ("out/", "summary.json", "timeline.json")  # written by commands, not committed
BASENAMES = {p.name for p in REPO.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}


def _id(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_links_and_named_files_exist(doc: Path) -> None:
    text = doc.read_text()
    missing = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            missing.append(f"link {target}")
    for name in {*NAMED_FILE.findall(text), *NAMED_DOC.findall(text)}:
        if name.startswith(GENERATED) or "*" in name:
            continue
        if "/" not in name and name in BASENAMES:
            continue  # a module or file named by itself where its package is clear
        if not any((base / name).exists() for base in
                   (doc.parent, *(REPO / r for r in ROOTS))):
            missing.append(f"file {name}")
    assert not missing, f"{_id(doc)} names what does not exist: {missing}"


def _code_lines(doc: Path) -> Iterator[str]:
    """Lines of fenced code blocks, with `\\` continuations joined."""
    fenced, pending = False, ""
    for raw in doc.read_text().splitlines():
        if raw.lstrip().startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if not fenced:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        yield line.removeprefix("$ ")


def _commands(prefix: str) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in _code_lines(doc):
            words = line.split("#", 1)[0].strip()
            for part in re.split(r"\s*(?:&&|;)\s*", words):
                part = re.sub(r"^(?:\S+=\S+\s+)*(?:\S*/)?(?=\S)", "", part, count=0)
                if part.startswith(prefix + " ") or part == prefix:
                    found.append((_id(doc), part))
    return found


INFERPOOL_LINES = _commands("inferpool")


def test_the_docs_show_command_lines() -> None:
    assert len(INFERPOOL_LINES) >= 10


@pytest.mark.parametrize(("doc", "line"), INFERPOOL_LINES)
def test_every_inferpool_command_line_shown_parses(doc: str, line: str) -> None:
    from inferpool.cli import build_parser
    from inferpool.controller.settings import given_flags, load

    words = shlex.split(line)[1:]
    if any(w in ("|", "...") or w.startswith("[") for w in words):
        pytest.skip("a synopsis, not a command line")
    parser = build_parser(words, every=True)
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:
        raise AssertionError(f"{doc}: `{line}` is refused by the parser") from exc
    if args.command in ("run", "plan"):
        load(given_flags(args))  # values validate too


def test_every_make_target_shown_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    shown = {w for _, line in _commands("make") for w in shlex.split(line)[1:]
             if not w.startswith("-") and "=" not in w}
    assert shown, "no make command lines found"
    assert shown <= targets, shown - targets
