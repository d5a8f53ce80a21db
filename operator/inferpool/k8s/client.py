"""One configured Kubernetes API client for the operator's writes (kopf does the watching)."""

from __future__ import annotations

import os

from kubernetes import client, config


def api_client(kubeconfig: str | None = None, qps_pool: int = 32) -> client.ApiClient:
    """In-cluster config inside a pod, else the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get(
            "KUBECONFIG"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    else:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = qps_pool
    return client.ApiClient(configuration)
