"""Logging: structlog, JSON by default, with kopf's and the client's stdlib records bridged in.

kopf logs through stdlib loggers and puts the object it is handling into the record's extras
(`k8s_ref`); ExtraAdder lifts those extras into the event, so every line says which object it is
about, in the same JSON shape as our own lines.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", fmt: str = "json") -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(default=str) if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(),
                           _drop_kopf_internals],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python warnings become log lines in the same format
    # The API client logs every request at debug, aiohttp every probe and scrape: warnings only.
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # kopf.objects says "Handler succeeded" for every watch event: only worth it when debugging.
    logging.getLogger("kopf.objects").setLevel(
        root.level if root.level <= logging.DEBUG else max(logging.WARNING, root.level))


# Extras kopf attaches to its records that are not worth a log field (its whole settings, etc.).
# ("logger" is not one of them: it is the record's logger name, added by add_logger_name.)
_KOPF_EXTRAS = ("k8s_skip", "settings", "memo", "patch", "resource", "indices",
                "activity", "retry", "started", "runtime", "param")


def _drop_kopf_internals(_: object, __: str, event: structlog.typing.EventDict
                         ) -> structlog.typing.EventDict:
    for key in _KOPF_EXTRAS:
        event.pop(key, None)
    ref = event.pop("k8s_ref", None)
    if isinstance(ref, dict):
        event["object"] = {k: ref.get(k) for k in ("kind", "namespace", "name", "uid")
                           if ref.get(k)}
    return event
