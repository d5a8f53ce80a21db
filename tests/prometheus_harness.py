"""The real-Prometheus harness lives in the package (the demo uses it too)."""

from inferpool.sandbox.prometheus import (
    Exporter,
    PrometheusProcess,
    PrometheusUnavailableError,
    ensure_prometheus,
    free_port,
)

__all__ = ["Exporter", "PrometheusProcess", "PrometheusUnavailableError", "ensure_prometheus",
           "free_port"]
