"""Derived Deployment names are collision-free, and a name once given never changes
(controller/naming.py)."""

from __future__ import annotations

from inferpool.controller.naming import resolve
from inferpool.k8s.labels import deployment_name, hashed_deployment_name

DOT, DASH = ("ns/chat-3.1", "l4", "l4"), ("ns/chat-3-1", "l4", "l4")
SPLIT_A, SPLIT_B = ("ns/qa", "l4-x", "l4"), ("ns/qa-l4", "x", "l4")


def test_plain_names_are_kept_where_nothing_else_claims_them() -> None:
    key = ("ns/chat", "h100", "h100")
    assert resolve([key], {}, ()).names == {key: "chat-h100-h100"}
    assert resolve([DOT], {}, ()).names == {DOT: "chat-3-1-l4-l4"}


def test_two_placements_with_one_plain_name_get_distinct_names() -> None:
    for one, other in ((DOT, DASH), (SPLIT_A, SPLIT_B)):
        assert deployment_name(*[one[0].split("/")[1], *one[1:]]) == deployment_name(
            *[other[0].split("/")[1], *other[1:]])  # the ambiguity
        names = resolve([one, other], {}, ()).names
        assert names[one] != names[other]
        assert all(len(n) <= 52 for n in names.values())
    # the same names in another namespace do not collide
    names = resolve([DOT, ("other/chat-3-1", "l4", "l4")], {}, ()).names
    assert set(names.values()) == {"chat-3-1-l4-l4"}


def test_a_name_once_given_is_kept_and_a_newcomer_gets_the_hashed_one() -> None:
    names = resolve([DOT, DASH], {DOT: "chat-3-1-l4-l4"}, ()).names
    assert names[DOT] == "chat-3-1-l4-l4"  # the running one keeps its name
    assert names[DASH] == hashed_deployment_name("chat-3-1", "l4", "l4")
    # existing installations keep their names, hashed or not
    assert resolve([DASH], {DASH: "whatever-it-was"}, ()).names[DASH] == "whatever-it-was"


def test_a_deployment_that_is_not_ours_is_avoided_and_named() -> None:
    result = resolve([DOT], {}, ["ns/chat-3-1-l4-l4"])
    assert result.names[DOT] == hashed_deployment_name("chat-3.1", "l4", "l4")
    assert result.avoided == {DOT: "ns/chat-3-1-l4-l4"}
    assert resolve([DOT], {}, ["other/chat-3-1-l4-l4"]).avoided == {}
    # for as long as it holds the name, also once ours runs under the hashed one
    hashed = result.names[DOT]
    assert resolve([DOT], {DOT: hashed}, ["ns/chat-3-1-l4-l4"]).avoided == {
        DOT: "ns/chat-3-1-l4-l4"}
