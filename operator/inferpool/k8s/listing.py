"""Which objects exist right now, by name and resourceVersion only: to tell when the operator's
caches are complete, and what they missed (controller/resync.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# The API server sends only each object's metadata: a fraction of full nodes and pods.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
PAGE = 500


def object_versions(call: Callable[..., Any], *args: Any, label_selector: str | None = None
                    ) -> dict[str, str | None]:
    """"namespace/name" -> resourceVersion of every object a typed list call (e.g.
    `CoreV1Api.list_node`) returns, page by page; cluster-scoped objects have an empty
    namespace, as in the caches."""
    keys: dict[str, str | None] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": PAGE, "_preload_content": False,
                                  "_headers": {"Accept": METADATA_ONLY}}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if token:
            kwargs["_continue"] = token
        doc = json.loads(call(*args, **kwargs).data)
        for item in doc.get("items") or []:
            meta = item.get("metadata") or {}
            keys[f"{meta.get('namespace') or ''}/{meta.get('name')}"] = meta.get(
                "resourceVersion")
        token = (doc.get("metadata") or {}).get("continue")
        if not token:
            return keys
