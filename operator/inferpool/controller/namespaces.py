"""Which of the `--namespace` namespaces the operator may read, decided before kopf starts.

A namespace its RBAC does not cover (a typo, or the chart's `watchNamespaces` not listing it)
answers 403 to every list and watch there. kopf retries such a watch a few times, then stops the
whole operator; and the caches, which wait until every watched namespace has been listed, would
never let the planner start. Each forbidden namespace is reported and left out instead: the
operator serves the namespaces it may read, and sees nothing of the others (it would not be
allowed to write there either). A namespace granted later is watched after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

import structlog
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("inferpool.namespaces")

# The namespaced resources the operator lists and watches (controller/handlers.py).
WATCHED: tuple[str, ...] = ("inference_pools", "deployments", "pods")

# (resource, namespace) -> None; raises ApiException when the API server refuses the listing
Probe = Callable[[str, str], None]


def readable(namespaces: Iterable[str], probe: Probe) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the namespaces every watched resource may be listed in, namespace -> why not for the
    others). Errors other than 403 are not a verdict on the namespace: they propagate."""
    ok: list[str] = []
    refused: dict[str, str] = {}
    for ns in namespaces:
        for resource in WATCHED:
            try:
                probe(resource, ns)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                refused[ns] = f"{resource}: {exc.status} {exc.reason}"
                break
        else:
            ok.append(ns)
    return tuple(ok), refused


async def wait_readable(namespaces: tuple[str, ...], probe: Probe, stop: asyncio.Event,
                        retry_seconds: float) -> tuple[str, ...]:
    """The readable namespaces, each refused one reported; while none is readable (or the API
    cannot be asked), report and ask again every `retry_seconds`. Empty only once `stop` is
    set."""
    while not stop.is_set():
        try:
            ok, refused = await asyncio.to_thread(readable, namespaces, probe)
        except Exception as exc:  # unreachable or failing: not a verdict, ask again
            log.warning("cannot check access to the watched namespaces", error=str(exc))
        else:
            for ns, why in sorted(refused.items()):
                log.error("namespace not watched: forbidden by RBAC; grant the operator's "
                          "ServiceAccount its Role there (chart: watchNamespaces) and restart",
                          namespace=ns, error=why)
            if ok:
                return ok
            log.error("no watched namespace is readable; waiting", namespaces=list(namespaces))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=retry_seconds)
    return ()
