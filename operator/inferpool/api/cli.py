"""`inferpool crds`: print the CustomResourceDefinitions, or write them to a directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from inferpool.api import crd


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="write crds/<plural>.<group>.yaml files here instead of stdout")
    parser.add_argument("--allow-privileged-templates", action="store_true",
                        help="leave the pod template security rules to the operator (install "
                             "this variant only together with --allow-privileged-namespaces; "
                             "see docs/api.md)")
    parser.add_argument("--refresh-pod-spec", action="store_true",
                        help="first rewrite the stored PodSpec schema (api/pod-spec-openapi.json)"
                             " from the OpenAPI document of the cluster in --kubeconfig (the "
                             "sandbox, when the Kubernetes version is bumped)")
    parser.add_argument("--kubeconfig", help="with --refresh-pod-spec (default: $KUBECONFIG)")
    parser.set_defaults(func=run)


def _refresh_pod_spec(kubeconfig: str | None) -> None:
    import json
    from importlib import resources

    from inferpool.api import pod_schema
    from inferpool.k8s.client import api_client

    api = api_client(kubeconfig)

    def get(path: str) -> Any:
        method, url, headers, body, post = api.param_serialize(
            "GET", path, auth_settings=["BearerToken"])
        response = api.call_api(method, url, headers, body, post, _request_timeout=60)
        response.read()
        return json.loads(response.data)

    doc = pod_schema.document(get("/openapi/v3/api/v1"), get("/version")["gitVersion"])
    target = Path(str(resources.files("inferpool.api").joinpath(pod_schema.FILE)))
    target.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    pod_schema.stored_components.cache_clear()
    print(f"wrote {target}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.refresh_pod_spec:
        _refresh_pod_spec(args.kubeconfig)
    relaxed: bool = args.allow_privileged_templates
    if args.output_dir is None:
        sys.stdout.write(crd.render(crd.generate_crds(allow_privileged_templates=relaxed)))
        return 0
    for path in crd.write(args.output_dir, allow_privileged_templates=relaxed):
        print(path, file=sys.stderr)
    return 0
