"""Which Prometheus URLs an InferencePool may point the operator at (an allow-list of prefixes).

An InferencePool's author chooses `spec.demand.prometheus.url`, and the operator sends a query,
and possibly a bearer token from a Secret, there: without a check that is a server-side request
forgery. URLs are parsed with yarl, as `PrometheusSource` parses them for the request, so the
URL that is checked is the URL that is sent (dot segments already resolved).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

ANY = "*"  # the allow-list entry that allows every URL


@dataclass(frozen=True, slots=True)
class _Base:
    scheme: str
    host: str
    port: int | None
    segments: tuple[str, ...]  # path segments, percent-encoded as sent; no trailing empty one

    def starts_with(self, prefix: _Base) -> bool:
        n = len(prefix.segments)
        return (self.scheme, self.host, self.port) == (prefix.scheme, prefix.host, prefix.port) \
            and self.segments[:n] == prefix.segments


def _parse(url: str, *, credentials_ok: bool) -> _Base | None:
    """Scheme, host (lower case), port (the scheme's default when not given) and path segments
    of a base URL; None when it is not a plain http(s) base URL."""
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError:  # bad port, backslash in the authority, ...
        return None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        return None
    if not credentials_ok and (parsed.raw_user is not None or parsed.raw_password is not None):
        return None
    if "?" in url or "#" in url:  # a base URL has no query or fragment
        return None
    segments = parsed.raw_path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # http://h/a/ is http://h/a
    for segment in segments:
        # Encoded slashes, backslashes and dots a proxy might still decode and resolve.
        decoded = unquote(segment)
        if "/" in decoded or "\\" in decoded or decoded in (".", ".."):
            return None
    return _Base(parsed.scheme, parsed.raw_host.lower(), port, tuple(segments))


def url_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether `url` starts with an entry of `allowed` (or `allowed` has `*`).

    Scheme and host compare without case, ports with the default made explicit
    (`http://p` is `http://p:80`), paths segment by segment (`http://p/a` allows `http://p/a/b`,
    not `http://p/ab`; a trailing slash changes nothing). Outside `*`, a URL with credentials
    (user info), a query, a fragment, or an encoded slash, backslash or dot segment in its path
    is never allowed. Credentials in an entry are ignored (the operator's own URL may carry
    them); an entry that does not parse allows nothing.
    """
    entries = list(allowed)
    if ANY in entries:
        return True
    base = _parse(url, credentials_ok=False)
    if base is None:
        return False
    prefixes = (_parse(entry, credentials_ok=True) for entry in entries)
    return any(prefix is not None and base.starts_with(prefix) for prefix in prefixes)


def parse_allowed_urls(text: str) -> tuple[str, ...]:
    """The comma-separated allow-list of `--prometheus-allowed-urls`: each entry `*` or an
    http(s) base URL without credentials, query or fragment. Raises ValueError naming a bad one."""
    entries = tuple(e.strip() for e in text.split(",") if e.strip())
    for entry in entries:
        if entry != ANY and _parse(entry, credentials_ok=False) is None:
            raise ValueError(f"{entry!r} is not '*' or an http(s):// URL prefix without "
                             "credentials, query or fragment")
    return entries


def without_credentials(url: str) -> str:
    """The URL for messages: any user and password left out."""
    try:
        return str(URL(url).with_user(None))
    except ValueError:
        scheme, sep, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path}"
