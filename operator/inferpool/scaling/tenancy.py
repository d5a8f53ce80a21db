"""PromQL tenancy: scope a query to one namespace, as prom-label-proxy does.

In tenancy mode every series selector of an InferencePool's query gets the matcher
`<label>="<its namespace>"`, so a tenant reads only its own namespace's series through the
operator's credentials. The query is parsed by promql-parser (the Rust parser of GreptimeTeam),
the matcher added to each selector of the syntax tree, and the tree printed again. Nothing is
trusted that is not checked: the unmodified tree must print back to itself exactly (the
printer does not escape strings and drops a subquery's empty step, so such queries are
refused rather than changed), and the printed result is parsed once more to confirm that every
selector in what is sent carries the matcher.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import promql_parser as pp

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
SAFE_VALUE = re.compile(r"[-.a-zA-Z0-9_]*")
# Functions that select series of their own (info() joins target_info, found by job/instance)
IMPLICIT_SELECTORS = frozenset({"info"})


class UnscopableQueryError(ValueError):
    """The query cannot be limited to the namespace; the message says why, for the user."""


def _children(node: object) -> Iterator[object]:
    """The sub-expressions of a node, as the Python objects the parser hands out (attributes
    are cached objects, so a change to one shows in the printed tree)."""
    if isinstance(node, pp.BinaryExpr):
        yield node.lhs
        yield node.rhs
    elif isinstance(node, pp.AggregateExpr):
        if isinstance(node.param, pp.Expr):
            yield node.param
        yield node.expr
    elif isinstance(node, pp.UnaryExpr | pp.ParenExpr | pp.SubqueryExpr):
        yield node.expr
    elif isinstance(node, pp.Call):
        yield from node.args
    elif isinstance(node, pp.MatrixSelector):
        yield node.vector_selector


def _selectors(root: object) -> list[pp.VectorSelector]:
    out: list[pp.VectorSelector] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, pp.VectorSelector):
            out.append(node)
        elif isinstance(node, pp.Call) and node.func.name in IMPLICIT_SELECTORS:
            raise UnscopableQueryError(f"{node.func.name}() reads series that no selector of "
                                       "the query names, which cannot be scoped")
        stack.extend(_children(node))
    return out


def _parser_count(root: pp.Expr) -> int:
    """Selectors as the parser's own walk counts them: a node kind `_children` does not know
    (a newer parser) would otherwise hide a selector from the rewrite."""
    count = 0

    def visit(node: pp.Expr) -> None:
        nonlocal count
        if isinstance(node, pp.VectorSelector):
            count += 1

    pp.walk(root, pre_visit=visit)
    return count


def _parse(query: str) -> pp.Expr:
    try:
        return pp.parse(query)
    except ValueError as err:
        raise UnscopableQueryError(f"the query does not parse: {err}") from None


def _check_matchers(selector: pp.VectorSelector, label: str, value: str) -> bool:
    """Whether the selector already has `label="value"`; refuses any other matcher on `label`
    and alternatives (`{a="1" or b="2"}`), which a single added matcher cannot scope."""
    if selector.matchers.or_matchers:
        raise UnscopableQueryError(f"a selector of {selector.name or 'the query'} uses `or` "
                                   "between label matchers, which the namespace cannot be "
                                   "added to")
    has = False
    for matcher in selector.matchers.matchers:
        if matcher.name != label:
            continue
        if matcher.op == pp.MatchOp.Equal and matcher.value == value:
            has = True
            continue
        raise UnscopableQueryError(
            f"the selector {selector} matches on the label {label!r} itself ({matcher}); the "
            f'operator adds {label}="{value}" to every selector')
    return has


def _prints_back(root: pp.Expr) -> bool:
    """Whether the printer reproduces the tree exactly (compared as the parser's own dump)."""
    try:
        return repr(pp.parse(str(root))) == repr(root)
    except ValueError:
        return False


def scope(query: str, label: str, value: str) -> str:
    """The query with `label="value"` in every series selector. Raises UnscopableQueryError.

    `label` is a Prometheus label name and `value` needs no escaping (a namespace name)."""
    if not LABEL_NAME.fullmatch(label) or not SAFE_VALUE.fullmatch(value):
        raise ValueError(f"not a label name and plain value: {label!r}, {value!r}")
    root = _parse(query)
    selectors = _selectors(root)
    if len(selectors) != _parser_count(root):
        raise UnscopableQueryError("the query has an expression that cannot be scoped")
    present = [_check_matchers(selector, label, value) for selector in selectors]
    if not _prints_back(root):
        raise UnscopableQueryError(
            "the query cannot be re-written exactly (strings with escape sequences such as "
            '\\" or \\n, and subqueries without a step, are not supported): rewrite it '
            "without them")
    for selector, has in zip(selectors, present, strict=True):
        if not has:
            added = [*selector.matchers.matchers, pp.Matcher(pp.MatchOp.Equal, label, value)]
            selector.matchers = pp.Matchers(added)
    scoped = str(root)
    # What is sent is checked as Prometheus will read it, not as it was built.
    try:
        sent = pp.parse(scoped)
        sent_selectors = _selectors(sent)
        exact = len(sent_selectors) == len(selectors) == _parser_count(sent) and all(
            _check_matchers(s, label, value) for s in sent_selectors)
    except (ValueError, UnscopableQueryError):
        exact = False
    if not exact:
        raise UnscopableQueryError("the query cannot be re-written exactly")
    return scoped
