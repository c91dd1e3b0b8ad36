"""structlog set-up: JSON in production, readable console output in development.

Context (request id, task id, agent) is bound through contextvars, so every line
logged while handling a request or running an agent carries it. Every line, from
structlog and from the standard library (uvicorn, SQLAlchemy), passes through
`redact_secrets`, so passwords, tokens and keys never reach a log.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from devteam.observability.tracing import add_trace_id

REDACTED = "[redacted]"

# Keys whose values are secret whatever they hold.
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|authorization|cookie|credential|private[_-]?key",
    re.IGNORECASE,
)
# Secret-looking substrings inside free text: JWTs, bearer credentials, key=value pairs.
_SECRET_TEXT = [
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (
        re.compile(
            r"(?i)\b(\w*(?:password|passwd|secret|token|api[_-]?key))"
            r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;\"']+)"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"(?i)(://[^:/@\s]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),
]


# Every pattern above needs one of these substrings: text without any is left as
# it is after one search instead of five substitutions (most log values).
_MAYBE_SECRET = re.compile(r"(?i)eyJ|bearer|basic|pass|secret|token|api[_-]?key|sk-|://")


def redact_text(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _secret_key(k) else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(v, depth + 1) for v in value)
    return value


def drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates each message with ANSI colours in this extra field.
    event_dict.pop("color_message", None)
    return event_dict


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    # Log lines use the same few keys over and over: each is searched once.
    return _SECRET_KEY.search(key) is not None


_WRITTEN_HERE = frozenset({"level", "logger", "timestamp"})
"""Keys whose values the processors before `redact_secrets` always write themselves
(a level, a logger's name, the time): there is nothing to search in them."""


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace secret values by key name and secret-looking text anywhere in the line."""
    for key, value in list(event_dict.items()):
        if key in _WRITTEN_HERE:
            continue
        if _secret_key(key) and key not in ("exc_info", "exception"):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(value)
    return event_dict


def _redact_rendered(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Tracebacks are rendered late; their text can quote arguments, so scrub it too.
    exception = event_dict.get("exception")
    if isinstance(exception, str):
        event_dict["exception"] = redact_text(exception)
    return event_dict


def configure_logging(
    *,
    level: str = "INFO",
    fmt: Literal["json", "console"] = "console",
    stream: Any = None,
) -> None:
    """Configure structlog and route the standard library's logging through it."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        add_trace_id,
        drop_color_message,
        redact_secrets,
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        final: list[Processor] = [
            structlog.processors.dict_tracebacks,
            _redact_exception_dicts,
            renderer,
        ]
    else:
        final = [
            structlog.processors.format_exc_info,
            _redact_rendered,
            structlog.dev.ConsoleRenderer(colors=False),
        ]

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    # No line shows the caller's file and line, thread or process: the standard library
    # need not find them for every record (its logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Access lines duplicate our own request log line.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in (
        "sqlalchemy.engine",
        "httpx",
        "httpx2",
        "httpcore",
        "mcp",
        "aiosqlite",
        "alembic.runtime.plugins",
        "asyncio",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _redact_exception_dicts(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    exception = event_dict.get("exception")
    if isinstance(exception, list):
        event_dict["exception"] = _redact(exception)
    return event_dict


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_context(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind `values` (task_id, agent, …) to every line logged inside the block."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


def context_snapshot() -> MutableMapping[str, Any]:
    return structlog.contextvars.get_contextvars()
