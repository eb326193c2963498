"""Structured logs: one JSON object per line on stderr, with the current request's id if any."""

from __future__ import annotations

import logging
import os
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# The id of the request being served (service/requestid.py sets it): every line written while
# serving it carries it, whichever logger wrote the line.
REQUEST_ID: ContextVar[str | None] = ContextVar("dlwp_request_id", default=None)

_FIELDS = ("request_id", "model", "route", "method", "path", "status", "duration_ms")


def _entry(created: float, level: str, logger: str, message: str) -> dict[str, Any]:
    entry = {
        "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message,
    }
    request_id = REQUEST_ID.get()
    if request_id is not None:
        entry["request_id"] = request_id
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record.created, record.levelname.lower(), record.name, record.getMessage())
        for key in _FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def write_access_line(method: str, path: str, status: int, seconds: float, model: str) -> None:
    """One access-log line, in the same format, straight to stderr (fd 2).

    It skips the logging module, whose records, handler lock and formatter cost ~5x as much
    per line (34 µs against 6 µs measured here): at thousands of requests a second that is the
    difference between a few and a quarter of the throughput.
    """
    entry = _entry(time.time(), "info", "dlwp.access", f"{method} {path} {status}")
    entry.update(method=method, path=path, status=status,
                 duration_ms=round(seconds * 1000, 3), model=model)  # fmt: skip
    # One write of one short line: whole, never interleaved with other lines on a pipe.
    os.write(2, orjson.dumps(entry) + b"\n")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
