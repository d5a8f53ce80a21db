"""Who may read /metrics: the API server decides, as controller-runtime's secure serving does.

A bearer token is checked with a TokenReview (who is it?) and a SubjectAccessReview on the
non-resource URL `/metrics`, verb `get` (may they?). Grant it with a ClusterRole rule
`nonResourceURLs: ["/metrics"], verbs: ["get"]`. Answers are cached for a few seconds per token
(hashed), so a scrape every few seconds does not cost two API calls each.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("inferpool.metrics")

CACHE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Decision:
    status: int  # 200 allowed, 401 not authenticated, 403 not authorized, 503 cannot tell
    reason: str


class MetricsAuthorizer:
    """Callable from the metrics server's threads (blocking API calls, thread-safe cache)."""

    def __init__(self, api: client.ApiClient, *, path: str = "/metrics",
                 timeout: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._authn = client.AuthenticationV1Api(api)
        self._authz = client.AuthorizationV1Api(api)
        self._path = path
        self._timeout = timeout
        self._clock = clock
        self._cache: dict[str, tuple[float, Decision]] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str) -> Decision:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < CACHE_SECONDS:
                return hit[1]
        try:
            decision = self._decide(token)
        except (ApiException, OSError, ValueError) as err:  # urllib3 errors are OSErrors
            log.warning("metrics authorization unavailable", error=f"{type(err).__name__}: {err}")
            return Decision(503, "cannot check the token with the API server now")
        with self._lock:
            if len(self._cache) > 1000:  # many tokens (a scan): start over, stay bounded
                self._cache.clear()
            self._cache[key] = (now, decision)
        return decision

    def _decide(self, token: str) -> Decision:
        review = self._authn.create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)),
            _request_timeout=self._timeout)
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return Decision(401, "the token is not valid")
        user = status.user
        access = self._authz.create_subject_access_review(client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user.username, groups=user.groups, uid=user.uid, extra=user.extra,
                non_resource_attributes=client.V1NonResourceAttributes(
                    path=self._path, verb="get"))),
            _request_timeout=self._timeout)
        if access.status is not None and access.status.allowed:
            return Decision(200, "allowed")
        return Decision(403, f"{user.username} may not get {self._path}")
