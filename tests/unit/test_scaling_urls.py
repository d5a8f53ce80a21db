"""The Prometheus URL allow-list: prefix matching on parsed URLs, never on raw strings."""

from __future__ import annotations

import pytest

from inferpool.scaling.urls import parse_allowed_urls, url_allowed, without_credentials

ENTRIES = ("http://prom.monitoring:9090", "https://thanos.example/tenant/a/")

ALLOWED = [
    "http://prom.monitoring:9090",
    "http://prom.monitoring:9090/",
    "http://prom.monitoring:9090/prometheus",  # anything below the host
    "HTTP://Prom.Monitoring:9090",  # scheme and host ignore case
    "https://thanos.example/tenant/a",  # the entry's trailing slash changes nothing
    "https://thanos.example/tenant/a/",
    "https://thanos.example:443/tenant/a/b",  # the default port made explicit
    "https://thanos.example/tenant/a/b/../c",  # resolves to /tenant/a/c, as sent
    "https://thanos.example/tenant/a/./b",
    "https://thanos.example/tenant/a//b",
]

REFUSED = [
    "http://prom.monitoring:9091",  # another port
    "http://prom.monitoring",  # port 80, not 9090
    "https://prom.monitoring:9090",  # another scheme
    "http://prom.monitoring.evil.example:9090",  # a longer host is another host
    "http://prom.monitoring:9090@evil.example",  # user info: the host is evil.example
    "http://user:pw@prom.monitoring:9090",  # user info, even towards an allowed host
    "http://prom.monitoring:9090?x=1",
    "http://prom.monitoring:9090/#frag",
    "https://thanos.example/tenant/ab",  # segment boundaries, not string prefixes
    "https://thanos.example/tenant/A",  # paths are case-sensitive
    "https://thanos.example/tenant",
    "https://thanos.example:8443/tenant/a",
    "https://thanos.example/tenant/a/../b",  # resolves to /tenant/b
    "https://thanos.example/tenant/a/%2e%2e/b",  # encoded dots resolve too
    "https://thanos.example/tenant/a/..%2f..%2fadmin",  # encoded slashes: a proxy may decode
    "https://thanos.example/tenant/a/%5c..%5cb",  # encoded backslashes
    "https://thanos.example/tenant/a/b\\..\\..\\x",  # backslashes
    "https://thanos.example/tenant%2Fa",
    "http://prom.monitoring:99999",  # does not parse
    "ftp://prom.monitoring:9090",
    "prom.monitoring:9090",
    "http:///x",
]


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed(url: str) -> None:
    assert url_allowed(url, ENTRIES)


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url: str) -> None:
    assert not url_allowed(url, ENTRIES)


def test_empty_list_allows_nothing_and_star_allows_everything() -> None:
    assert not url_allowed("http://prom.monitoring:9090", [])
    assert url_allowed("http://user:pw@anything.example:1/x?y#z", ["http://a", "*"])


def test_entries_are_normalised_too() -> None:
    assert url_allowed("http://prom:80/a/b", ["HTTP://PROM/a/"])
    assert url_allowed("https://[::1]:9090/x", ["https://[::1]:9090"])
    assert not url_allowed("https://[::2]:9090/x", ["https://[::1]:9090"])
    assert not url_allowed("http://prom/a", ["not a url", "http://prom/b"])


def test_credentials_in_an_entry_are_ignored() -> None:
    # the operator's own --prometheus-url may carry credentials: its host stays allowed
    assert url_allowed("http://prom:9090/x", ["http://op:secret@prom:9090"])


def test_parse_allowed_urls() -> None:
    assert parse_allowed_urls("") == ()
    assert parse_allowed_urls(" http://a:9090 , https://b/p/ ,, *") == (
        "http://a:9090", "https://b/p/", "*")
    for bad in ("a:9090", "ftp://a", "http://u:p@a", "http://a?x=1", "http://a#f", "http://a:0x"):
        with pytest.raises(ValueError, match="not '\\*' or an http"):
            parse_allowed_urls(f"http://ok,{bad}")


def test_without_credentials() -> None:
    assert without_credentials("http://u:pw@prom:9090/x") == "http://prom:9090/x"
    assert without_credentials("http://prom:9090") == "http://prom:9090"
    assert without_credentials("http://u:pw@prom:99999/x") == "http://prom:99999/x"
