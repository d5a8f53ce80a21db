"""Tenancy mode: every selector of a query is scoped to the InferencePool's namespace, checked by
parsing what is sent; what cannot be scoped exactly is refused, never sent unscoped."""

from __future__ import annotations

import promql_parser as pp
import pytest

from inferpool.scaling.tenancy import UnscopableQueryError, scope


def selectors(query: str) -> list[pp.VectorSelector]:
    found: list[pp.VectorSelector] = []

    def visit(node: pp.Expr) -> None:
        if isinstance(node, pp.VectorSelector):
            found.append(node)

    pp.walk(pp.parse(query), pre_visit=visit)
    return found


@pytest.mark.parametrize(("query", "scoped"), [
    ('sum(rate(http_requests_total{job="x"}[5m]))',
     'sum(rate(http_requests_total{job="x",ns="a"}[5m]))'),
    ("max_over_time(sum(rate(x[1m]))[10m:1m])", 'max_over_time(sum(rate(x{ns="a"}[1m]))[10m:1m])'),
    ('{__name__=~"req_.*"}', '{__name__=~"req_.*",ns="a"}'),
    ('x{ns="a"}', 'x{ns="a"}'),  # already scoped: kept, not doubled
    ("topk(2, x) + quantile(0.5, y)", 'topk(2, x{ns="a"}) + quantile(0.5, y{ns="a"})'),
    ('sum(rate(x[5m] offset 1m)) / on(pod) group_left count(y{b=~"c"}) or vector(0)',
     'sum(rate(x{ns="a"}[5m] offset 1m)) / on (pod) group_left () count(y{b=~"c",ns="a"}) or '
     ' vector(0)'),
    ("vector(1)", "vector(1)"),  # reads no series: nothing to scope
])
def test_every_selector_gets_the_namespace(query: str, scoped: str) -> None:
    out = scope(query, "ns", "a")
    assert out == scoped
    for selector in selectors(out):
        assert [(m.name, m.value) for m in selector.matchers.matchers if m.name == "ns"] == [
            ("ns", "a")]


@pytest.mark.parametrize(("query", "says"), [
    ('x{ns="b"}', "the operator adds ns=\"a\" to every selector"),  # another tenant's
    ('x{ns=~"a|b"}', "matches on the label 'ns'"),
    ('x{ns!="a"}', "matches on the label 'ns'"),
    ('sum(x) + y{ns=""}', "matches on the label 'ns'"),
    ('x{a="1" or b="2"}', "uses `or` between label matchers"),
    ('x{a="\\""}', "cannot be re-written exactly"),  # the printer does not escape
    ("x[5m:]", "cannot be re-written exactly"),  # the printer drops the subquery
    ("sum(x", "does not parse"),
    ("sum(info(x))", "reads series that no selector of the query names"),  # target_info
])
def test_what_cannot_be_scoped_is_refused(query: str, says: str) -> None:
    with pytest.raises(UnscopableQueryError) as err:
        scope(query, "ns", "a")
    assert says in str(err.value)


def test_label_and_value_are_checked() -> None:
    with pytest.raises(ValueError, match="not a label name"):
        scope("x", 'ns"}', "a")
    with pytest.raises(ValueError, match="not a label name"):
        scope("x", "ns", 'a"} or y{b="')
