"""Logs: one JSON object per line, ours and kopf's alike, with the object reference as a field."""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any, cast

import kopf
import pytest
import structlog

from inferpool import logs

BODY: dict[str, Any] = {"apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": "chat", "namespace": "serving", "uid": "uid-1"}}


def kopf_logger() -> kopf.ObjectLogger:
    """kopf's own per-object logger, as its handlers and reactor use it."""
    return kopf.ObjectLogger(body=kopf.Body(cast(kopf.RawBody, BODY)),
                             settings=kopf.OperatorSettings())


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {n: logging.getLogger(n).level for n in ("kubernetes", "urllib3", "aiohttp.access",
                                                       "kopf.objects")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_our_lines_are_json_with_level_logger_and_utc_time(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    structlog.get_logger("inferpool.planner").info("reconciled", writes=2, woken_by=["tick"])
    (line,) = lines(capsys)
    assert line["event"] == "reconciled"
    assert line["level"] == "info"
    assert line["logger"] == "inferpool.planner"
    assert line["writes"] == 2
    assert line["woken_by"] == ["tick"]
    stamp = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == dt.timedelta(0)


def test_kopf_object_records_carry_the_object_reference(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    kopf_logger().warning(
        "Handler %r failed temporarily", "on_event")
    (line,) = lines(capsys)
    assert line["event"] == "Handler 'on_event' failed temporarily"
    assert line["level"] == "warning"
    assert line["logger"] == "kopf.objects"
    assert line["object"] == {"kind": "InferencePool", "namespace": "serving", "name": "chat",
                              "uid": "uid-1"}
    for internal in ("k8s_ref", "k8s_skip", "settings"):
        assert internal not in line


def test_a_plain_record_with_k8s_ref_extra_becomes_an_object_field(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    logging.getLogger("kopf.activities.startup").info(
        "cluster-scoped thing", extra={"k8s_ref": {"kind": "Node", "name": "h100-0",
                                                   "namespace": None}, "k8s_skip": True})
    (line,) = lines(capsys)
    assert line["object"] == {"kind": "Node", "name": "h100-0"}  # no empty namespace
    assert line["logger"] == "kopf.activities.startup"


def test_exceptions_are_one_json_line_with_the_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    try:
        raise ValueError("bad plan")
    except ValueError:
        logging.getLogger("kopf._core.reactor").exception("reactor failed")
        structlog.get_logger("inferpool.planner").exception("reconcile failed")
    first, second = lines(capsys)
    assert "ValueError: bad plan" in first["exception"]
    assert "ValueError: bad plan" in second["exception"]
    assert second["level"] == "error"


def test_the_level_flag_filters_and_kopf_chatter_needs_debug(
        capsys: pytest.CaptureFixture[str]) -> None:
    kopf_objects = kopf_logger()
    logs.configure("info", "json")
    structlog.get_logger("inferpool.x").debug("hidden")
    kopf_objects.info("Handler 'on_event' succeeded.")
    logging.getLogger("urllib3").info("connection pool")
    assert lines(capsys) == []
    logs.configure("debug", "json")
    structlog.get_logger("inferpool.y").debug("shown")
    kopf_objects.info("Handler 'on_event' succeeded.")
    logging.getLogger("urllib3").info("connection pool")  # the client stays quiet
    assert [line["event"] for line in lines(capsys)] == ["shown",
                                                         "Handler 'on_event' succeeded."]
    logs.configure("warning", "json")
    structlog.get_logger("inferpool.z").info("hidden")
    structlog.get_logger("inferpool.z").warning("kept")
    assert [line["event"] for line in lines(capsys)] == ["kept"]


def test_python_warnings_are_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    (line,) = lines(capsys)
    assert line["logger"] == "py.warnings"
    assert "deprecated thing" in line["event"]


def test_console_format_is_for_humans(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "console")
    structlog.get_logger("inferpool.planner").info("reconciled", writes=2)
    kopf_logger().warning("kopf says")
    err = capsys.readouterr().err
    assert "reconciled" in err
    assert "writes=2" in err
    assert "kopf says" in err
    assert "chat" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[0])
