"""The operator's API client never waits for ever on a hung API server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from kubernetes import client

from inferpool.k8s.client import api_client


def _kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    return path


def test_a_call_to_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # accepts connections (the kernel does) and never answers
    outcome: list[BaseException | None] = []
    api = client.CoreV1Api(api_client(str(_kubeconfig(tmp_path, hung.getsockname()[1])),
                                      request_timeout=0.5))

    def call() -> None:
        try:
            api.list_node()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=10)
    hung.close()
    assert not worker.is_alive(), "the call still waits after 10 s"
    assert outcome
    assert outcome[0] is not None
    assert time.monotonic() - started < 3  # one read timeout, not one per urllib3 retry
