"""JSON logs to stdout: one object a line with timestamp, severity, logger, message and trace id.

Exceptions are written through `zhike_runtime.redaction`: a traceback keeps its frames but each
exception's text is reduced to its class and a value-free message, and an exception passed as a
format argument or an `extra=` value is described the same way. Personal data in an exception's
text (a PostgreSQL DETAIL, a driver quoting a bound value) never reaches the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from opentelemetry import trace

from zhike_runtime.redaction import describe_error, format_exception

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "severity": record.levelname,
            "logger": record.name,
            "service": self._service,
            "message": _message(record),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = f"{span_context.trace_id:032x}"
            entry["span_id"] = f"{span_context.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = describe_error(value) if isinstance(value, BaseException) else value
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = format_exception(record.exc_info[1])
        return json.dumps(entry, ensure_ascii=False, default=str)


def _message(record: logging.LogRecord) -> str:
    """The formatted message, with any exception among the arguments described, not str()'d."""
    args = record.args
    if isinstance(args, tuple) and any(isinstance(a, BaseException) for a in args):
        safe = tuple(describe_error(a) if isinstance(a, BaseException) else a for a in args)
        return str(record.msg) % safe
    if isinstance(args, dict) and any(isinstance(a, BaseException) for a in args.values()):
        return str(record.msg) % {
            k: describe_error(a) if isinstance(a, BaseException) else a for k, a in args.items()
        }
    return record.getMessage()


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries(level)


# Libraries' chatter at INFO (reconnect attempts, SQL) would drown the service's own lines, and
# below WARNING some of it is personal data: SQLAlchemy logs result rows at DEBUG and aiosqlite
# each call with its bound values. They stay at WARNING or above whatever the service's level.
NOISY_LIBRARIES = ("nats", "sqlalchemy", "alembic", "aiosqlite", "asyncio")


def quiet_libraries(level: str) -> None:
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
