"""Keep the caches true to the cluster when the watches were not.

kopf re-lists after a watch expires (410 Gone, e.g. after an API server restart) and yields the
objects that exist, but nothing tells it what was deleted meanwhile: a deleted Deployment of
ours would stay in the cache (never recreated, reported Ready), a deleted Pending pod would keep
its node pool "stocked out", a removed node would offer capacity. So the caches are compared
with a metadata-only listing (names and resourceVersions, k8s/listing.py), both ways:

- cached but not listed, with no watch event since the listing began: a ghost, dropped;
- listed but not cached, or cached at another resourceVersion, with no event since: fetched.

This runs every `resync_seconds`, at once when the API server answers again after failing, and
before the planner acts on a destructive change (Karpenter's `Cluster.Synced()`): a plan that
deletes or scales down from a stale view waits for the caches to be checked.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from kubernetes.client.exceptions import ApiException

from inferpool.controller.handlers import RESOURCES, Attachable, Caches, GetObject, Seen
from inferpool.controller.planner import INDEX_NAMES

log = structlog.get_logger("inferpool.resync")

ListVersions = Callable[[str], Mapping[str, str | None]]
MAX_FETCHES = 200  # objects fetched one by one per resource and round; the rest next round
TOMBSTONE_SECONDS = 600.0  # deletions remembered (to tell a late fetch from a fresh event)


@dataclass(frozen=True)
class Diff:
    ghosts: list[str]  # cached, no longer listed
    missed: list[str]  # listed, never seen
    stale: list[str]  # listed at another resourceVersion than the one cached


def compare(known: Mapping[str, Seen], listed: Mapping[str, str | None], listed_at: float,
            deleted: Mapping[str, float]) -> Diff:
    """What the caches got wrong, judged against a listing begun at `listed_at`: an object with
    a watch event since then is newer in the cache than in the listing and is left alone."""
    ghosts = sorted(k for k, seen in known.items() if k not in listed and seen.at < listed_at)
    missed = sorted(k for k in listed if k not in known and deleted.get(k, -1.0) < listed_at)
    stale = sorted(k for k, rv in listed.items() if (seen := known.get(k)) is not None
                   and rv is not None and seen.resource_version != rv and seen.at < listed_at)
    return Diff(ghosts, missed, stale)


async def resync(caches: Caches, list_versions: ListVersions, get_object: GetObject,
                 names: tuple[str, ...] = INDEX_NAMES) -> Counter[str]:
    """One comparison of every resource's cache with a listing; fixes what differs. Returns
    the corrections that changed a view, as "resource ghost|missed|stale" -> count. Raises when
    a resource cannot be listed (its cache is left as it is)."""
    changed: Counter[str] = Counter()
    for name in names:
        started = caches.clock()
        deleted = caches.deleted[name]
        for key in [k for k, t in deleted.items() if t < started - TOMBSTONE_SECONDS]:
            del deleted[key]
        try:
            listed = await asyncio.to_thread(list_versions, name)
        except ApiException as exc:
            if exc.status == 404:  # CRD not installed: nothing is watched, nothing to compare
                continue
            raise
        diff = compare(caches.known[name], listed, started, deleted)
        for key in diff.ghosts:
            if caches.forget(name, key):
                changed[f"{name} ghost"] += 1
        todo = [("missed", k) for k in diff.missed] + [("stale", k) for k in diff.stale]
        if len(todo) > MAX_FETCHES:
            log.warning("many objects missed by the watch; fetching them over several rounds",
                        resource=name, missed=len(todo))
        view = RESOURCES[name][1]
        for kind, key in todo[:MAX_FETCHES]:
            asked = caches.clock()
            body = await asyncio.to_thread(get_object, name, key)
            if caches.event_since(name, key, asked):
                continue  # the watch delivered it meanwhile: newer than what we fetched
            if body is None:  # deleted (or no longer ours) since the listing
                if key in caches.known[name] and caches.forget(name, key):
                    changed[f"{name} ghost"] += 1
            elif caches.put(name, body, view):
                changed[f"{name} {kind}"] += 1
    return changed


@dataclass
class Resyncer:
    """Runs `resync` periodically and on request; tells the planner whether its caches are
    in sync (`synced`)."""

    caches: Caches
    planner: Attachable
    list_versions: ListVersions
    get_object: GetObject
    period: float = 60.0
    on_done: Callable[[Mapping[str, int], Counter[str]], None] | None = None
    last_synced: float = -math.inf  # caches.clock() when the last complete resync began
    _asked: asyncio.Event = field(default_factory=asyncio.Event)
    _reasons: set[str] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def request(self, reason: str) -> None:
        self._reasons.add(reason)
        self._asked.set()

    async def run(self, ready: asyncio.Event) -> None:
        await ready.wait()  # `fill` checks the first listing itself
        self.last_synced = self.caches.clock()
        while True:
            try:
                await asyncio.wait_for(self._asked.wait(), timeout=self.period)
            except TimeoutError:
                self._reasons.add("period")
            self._asked.clear()
            reasons, self._reasons = sorted(self._reasons), set()
            await self.resync_now(", ".join(reasons))

    async def resync_now(self, why: str) -> bool | None:
        """True when the caches had to be corrected, False when they were right, None when
        the listing failed (they may be wrong)."""
        async with self._lock:
            started = self.caches.clock()
            try:
                changed = await resync(self.caches, self.list_versions, self.get_object)
            except Exception as exc:  # API unreachable: try again next period or on request
                log.warning("cannot resync the caches", why=why, error=str(exc)[:300])
                return None
            self.last_synced = started
        if self.on_done is not None:
            self.on_done({n: len(k) for n, k in self.caches.known.items()}, changed)
        if changed:
            log.warning("caches corrected against a fresh listing", why=why, **{
                k.replace(" ", "_"): v for k, v in sorted(changed.items())})
            self.planner.wake("caches resynced")
            return True
        log.debug("caches in sync", why=why)
        return False

    async def synced(self, max_age: float) -> bool:
        """Karpenter's `Cluster.Synced()`: may the planner act on its caches? Yes when a resync
        began less than `max_age` ago; else one runs now, and the answer is yes only if it found
        nothing to correct (otherwise the plan was made from a wrong view)."""
        if self.caches.clock() - self.last_synced < max_age:
            return True
        return await self.resync_now("before a destructive change") is False
