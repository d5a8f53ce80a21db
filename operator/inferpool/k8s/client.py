"""One configured Kubernetes API client for the operator's writes (kopf does the watching)."""

from __future__ import annotations

import os
from typing import Any

import urllib3
from kubernetes import client, config

CONNECT_TIMEOUT = 5.0  # seconds to open a connection (TCP and TLS) to the API server
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds to wait for an answer, unless a call says otherwise


class TimeoutApiClient(client.ApiClient):  # type: ignore[misc]
    """Every call without its own `_request_timeout` gets (connect, read) timeouts: without one
    a call to a hung API server (or a dead connection) waits for ever."""

    def __init__(self, configuration: client.Configuration,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        super().__init__(configuration)
        self.request_timeout = (min(CONNECT_TIMEOUT, request_timeout), request_timeout)

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> Any:
        return super().call_api(method, url, header_params, body, post_params,
                                _request_timeout=_request_timeout or self.request_timeout)


def api_client(kubeconfig: str | None = None, qps_pool: int = 32,
               request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> client.ApiClient:
    """In-cluster config inside a pod, else the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get(
            "KUBECONFIG"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    else:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = qps_pool
    # urllib3 would retry a timed-out read 3 times (4 timeouts in a row before a call fails);
    # one retry of a failed connect covers a pooled connection the server closed, and the
    # callers retry the rest on their own schedule (the lease loop, the next reconcile)
    configuration.retries = urllib3.Retry(total=1, read=0, status=0, redirect=0)
    return TimeoutApiClient(configuration, request_timeout)
