"""The bearer token of a Prometheus query, read from its Secret before each query.

Read on a thread pool of its own with a timeout on the call and on the wait, so a slow or
unreachable API server costs one failed reading, never the event loop or the planner. Nothing
is cached: every read sees the Secret as it is, so a rotated token is sent from the next query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from concurrent.futures import Executor
from functools import partial
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from inferpool.scaling.sources import Reading

REASON = "SecretUnreadable"
USAGE_LABEL = "inferpool.dev/usage"
USAGE = "prometheus-auth"


def _get(core: client.CoreV1Api, namespace: str, name: str, timeout: float) -> Any:
    return core.read_namespaced_secret(name, namespace,
                                       _request_timeout=(min(timeout, 5.0), timeout))


async def read_token(core: client.CoreV1Api, executor: Executor, namespace: str, name: str,
                     key: str, *, timeout: float) -> str | Reading:
    """The value of `key` in Secret namespace/name, or a failed Reading saying why not."""
    where = f"Secret {namespace}/{name}"
    loop = asyncio.get_running_loop()
    try:
        secret = await asyncio.wait_for(
            loop.run_in_executor(executor, partial(_get, core, namespace, name, timeout)),
            timeout)
    except TimeoutError:
        return Reading.failed(REASON, f"reading {where} took more than {timeout:g}s (the API "
                              "server is slow or unreachable); the next read tries again")
    except ApiException as err:
        if err.status == 404:
            return Reading.failed(REASON, f"{where} does not exist")
        if err.status == 403:
            return Reading.failed(REASON, f"the operator may not read {where} (it needs get "
                                  "on secrets: chart value prometheus.authSecrets)")
        return Reading.failed(REASON, f"reading {where}: HTTP {err.status} {err.reason}")
    except Exception as err:  # urllib3's connection errors and timeouts, and anything else
        return Reading.failed(REASON, f"reading {where}: {type(err).__name__}: {err}")
    meta = secret.metadata
    if ((meta.labels if meta else None) or {}).get(USAGE_LABEL) != USAGE:
        return Reading.failed(REASON, f"{where} lacks the label {USAGE_LABEL}={USAGE}, "
                              "without which the operator does not use a Secret")
    raw = (secret.data or {}).get(key)
    if not raw:
        return Reading.failed(REASON, f"{where} has no key {key!r}")
    try:
        token = base64.b64decode(raw, validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        return Reading.failed(REASON, f"key {key!r} of {where} is not UTF-8 text")
    if not token:
        return Reading.failed(REASON, f"key {key!r} of {where} is empty")
    return token
