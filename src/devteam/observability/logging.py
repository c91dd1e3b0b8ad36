"""structlog set-up: JSON in production, readable console output in development.

Context (request id, task id, agent) is bound through contextvars, so every line
logged while handling a request or running an agent carries it. Every line, from
structlog and from the standard library (uvicorn, SQLAlchemy), passes through
`redact_secrets`, so passwords, tokens and keys never reach a log.

A structlog line that only our handler would receive (no other handler, no filter: the
service's usual case) is written by the same processors straight to the handler's stream,
without the standard library's records and handler calls (`_DirectBoundLogger`): the same
bytes, for well under half the CPU of a line. Any other handler (pytest's `caplog`) gets
records as before.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, Literal

import structlog
from structlog.processors import _json_fallback_handler
from structlog.stdlib import ProcessorFormatter
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
# The same search on ASCII text, lowered first: a case-sensitive search runs several
# times faster, and on ASCII text ignoring case is lowering both sides (the pattern's
# letters are ASCII; `(?i)` also matches a few non-ASCII letters, left to the search above).
_MAYBE_SECRET_LOWERED = re.compile(r"eyj|bearer|basic|pass|secret|token|api[_-]?key|sk-|://")


def _may_hold_secret(text: str) -> bool:
    if text.isascii():
        return _MAYBE_SECRET_LOWERED.search(text.lower()) is not None
    return _MAYBE_SECRET.search(text) is not None


def redact_text(text: str) -> str:
    return _substitute_secrets(text) if _may_hold_secret(text) else text


def _substitute_secrets(text: str) -> str:
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


_NOTHING_TO_REDACT = frozenset({int, float, bool, type(None)})
"""Types of values `_redact` returns as they are (the usual numbers of a line)."""


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace secret values by key name and secret-looking text anywhere in the line."""
    texts: list[str] = []
    # Values change in place, keys stay: the dict can be iterated as it is.
    for key, value in event_dict.items():
        if key in _WRITTEN_HERE:
            continue
        if _secret_key(key) and key not in ("exc_info", "exception"):
            event_dict[key] = REDACTED
        elif type(value) is str:
            texts.append(value)
        elif type(value) not in _NOTHING_TO_REDACT:
            event_dict[key] = _redact(value)
    # One search through all the line's texts (no hint spans the newline joining two):
    # only when it finds a hint is each text searched and redacted on its own.
    if texts and _may_hold_secret("\n".join(texts)):
        for key, value in event_dict.items():
            if type(value) is str and key not in _WRITTEN_HERE:
                event_dict[key] = redact_text(value)
    return event_dict


def _redact_rendered(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Tracebacks are rendered late; their text can quote arguments, so scrub it too.
    exception = event_dict.get("exception")
    if isinstance(exception, str):
        event_dict["exception"] = redact_text(exception)
    return event_dict


_stamped_second: tuple[int, str] = (-1, "")
"""The last second `add_timestamp` wrote, and its text."""


def add_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The time in UTC to the microsecond, as structlog's `TimeStamper(fmt="iso", utc=True)`
    writes it (`datetime.now(UTC).isoformat()`, `Z` for `+00:00`): the same clock cut to the
    microsecond the same way, the date and time to the second formatted once a second."""
    global _stamped_second
    second, microsecond = divmod(time.time_ns() // 1000, 1_000_000)
    stamped, text = _stamped_second
    if second != stamped:
        text = datetime.fromtimestamp(second, UTC).replace(tzinfo=None).isoformat()
        _stamped_second = (second, text)
    # `isoformat` leaves out a fraction of zero microseconds.
    event_dict["timestamp"] = f"{text}.{microsecond:06d}Z" if microsecond else f"{text}Z"
    return event_dict


_JSON = json.JSONEncoder(default=_json_fallback_handler)


def render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """structlog's `JSONRenderer()`, which calls `json.dumps(event_dict, default=...)`: the
    same text from one encoder, instead of a new encoder for every line."""
    return _JSON.encode(event_dict)


def _redact_exception_dicts(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    exception = event_dict.get("exception")
    if isinstance(exception, list):
        event_dict["exception"] = _redact(exception)
    return event_dict


_SHARED: Final[tuple[Processor, ...]] = (
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    add_timestamp,
    structlog.stdlib.ExtraAdder(),
    add_trace_id,
    drop_color_message,
    redact_secrets,
)
"""What every line goes through: structlog's before its record is made, the standard
library's in the formatter."""

_STRUCTLOG_CHAIN: Final[list[Processor]] = [*_SHARED, ProcessorFormatter.wrap_for_formatter]
"""structlog's processors: one list for every configuration, so that loggers bound under an
earlier one still find it is ours (`_DirectBoundLogger`)."""

_JSON_FINAL: Final[tuple[Processor, ...]] = (
    structlog.processors.dict_tracebacks,
    _redact_exception_dicts,
    render_json,
)
_CONSOLE_FINAL: Final[tuple[Processor, ...]] = (
    structlog.processors.format_exc_info,
    _redact_rendered,
    structlog.dev.ConsoleRenderer(colors=False),
)


def configure_logging(
    *,
    level: str = "INFO",
    fmt: Literal["json", "console"] = "console",
    stream: Any = None,
) -> None:
    """Configure structlog and route the standard library's logging through it."""
    global _own_handler
    final = _JSON_FINAL if fmt == "json" else _CONSOLE_FINAL
    structlog.configure(
        processors=_STRUCTLOG_CHAIN,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_DirectBoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[ProcessorFormatter.remove_processors_meta, *final],
    )
    # No line shows the caller's file and line, thread or process: the standard library
    # need not find them for every record (its logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    _own_handler = _OwnHandler(handler, formatter, final)
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


_LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}
"""The level of the standard library's record each of structlog's methods makes."""


class _OwnHandler:
    """The handler `configure_logging` put on the root logger, and its formatter's processors
    (after `remove_processors_meta`, which only removes what the formatter added)."""

    def __init__(
        self,
        handler: logging.StreamHandler[Any],
        formatter: ProcessorFormatter,
        processors: tuple[Processor, ...],
    ) -> None:
        self.handler = handler
        self.formatter = formatter
        self.processors = processors

    def alone_receives(self, logger: logging.Logger, levelno: int) -> bool:
        """Whether a record of `levelno` from `logger` would reach this handler and no other,
        through no filter and this formatter: what the standard library's `Logger.handle` and
        `callHandlers` would do with it."""
        handler = self.handler
        if logger.filters or handler.filters or handler.formatter is not self.formatter:
            return False
        received = False
        current: logging.Logger | None = logger
        while current is not None:
            for other in current.handlers:
                if levelno >= other.level:
                    if other is not handler or received:
                        return False
                    received = True
            current = current.parent if current.propagate else None
        return received

    def write(
        self, logger: logging.Logger, method_name: str, levelno: int, event_dict: EventDict
    ) -> None:
        """Render and write the line as the formatter and `StreamHandler.emit` would."""
        rendered: Any = dict(event_dict)
        try:
            for processor in self.processors:
                rendered = processor(logger, method_name, rendered)
            line: str | None = rendered + self.handler.terminator
        except Exception:
            line = None
        if line is None:
            # Whatever failed fails again the standard way, and is reported as it always was
            # (out of the `except` block: a traceback logged is the caller's exception).
            args, kwargs = ProcessorFormatter.wrap_for_formatter(logger, method_name, event_dict)
            getattr(logger, method_name)(*args, **kwargs)
            return
        handler = self.handler
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.flush()
        except RecursionError:
            raise
        except Exception:
            handler.handleError(
                logger.makeRecord(logger.name, levelno, "(unknown file)", 0, event_dict, (), None)
            )
        finally:
            handler.release()


_own_handler: _OwnHandler | None = None


class _DirectBoundLogger(structlog.stdlib.BoundLogger):
    """structlog's standard-library logger, cheaper per line and writing the same bytes.

    A line below its logger's level is dropped before any processor runs. A line that only
    our handler would receive, through no filter, is rendered by our formatter's processors
    and written to its stream without a `LogRecord`, a copy of it and the handler's calls:
    most of the cost of a line. Another handler on the way (pytest's `caplog`, one added
    later) or a filter on the logger or our handler sends the line the standard way,
    records and all.
    """

    def _proxy_to_logger(
        self,
        method_name: str,
        event: str | None = None,
        *event_args: str,
        **event_kw: Any,
    ) -> Any:
        logger: logging.Logger = self._logger
        levelno = _LEVELS.get(method_name)
        if levelno is None:
            return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)
        if not logger.isEnabledFor(levelno):
            return None
        own = _own_handler
        if (
            own is None
            or self._processors is not _STRUCTLOG_CHAIN
            or not own.alone_receives(logger, levelno)
        ):
            return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)
        event_dict: Any = self._context.copy()
        event_dict.update(event_kw)
        if event_args:
            event_dict["positional_args"] = event_args
        if event is not None:
            event_dict["event"] = event
        try:
            for processor in _SHARED:
                event_dict = processor(logger, method_name, event_dict)
            own.write(logger, method_name, levelno, event_dict)
        except structlog.DropEvent:
            pass
        return None


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
