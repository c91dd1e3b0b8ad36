"""Logs carry request context and never carry secrets."""

from __future__ import annotations

import io
import json
import logging
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

import pytest
import structlog

from devteam.observability.logging import (
    _MAYBE_SECRET,
    REDACTED,
    _may_hold_secret,
    add_timestamp,
    configure_logging,
    get_logger,
    log_context,
    redact_secrets,
    redact_text,
    render_json,
)


@pytest.fixture
def json_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    yield stream
    configure_logging(level="INFO", fmt="console")


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_json_lines_carry_the_bound_context(json_stream: io.StringIO) -> None:
    log = get_logger("test")
    with log_context(request_id="r-1", task_id="t-1", agent="backend"):
        log.info("working", step=2)
    log.info("outside")
    first, second = lines(json_stream)
    assert first["event"] == "working"
    assert first["request_id"] == "r-1"
    assert first["task_id"] == "t-1"
    assert first["agent"] == "backend"
    assert first["step"] == 2
    assert "request_id" not in second


def test_secret_keys_are_redacted(json_stream: io.StringIO) -> None:
    get_logger("test").info(
        "login",
        password="hunter2",
        access_token="abc",
        api_key="sk-1",
        headers={"Authorization": "Bearer xyz", "accept": "json"},
        username="ada",
    )
    (line,) = lines(json_stream)
    text = json.dumps(line)
    for secret in ("hunter2", "abc", "sk-1", "xyz"):
        assert secret not in text
    assert line["username"] == "ada"
    assert line["password"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "accept": "json"}


def test_secrets_inside_text_are_redacted(json_stream: io.StringIO) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    get_logger("test").warning(f"rejected token {jwt} for url postgresql://u:pw123@db/x")
    logging.getLogger("uvicorn.error").warning("header Authorization: Bearer abcdefghijkl")
    text = json_stream.getvalue()
    assert jwt not in text
    assert "pw123" not in text
    assert "abcdefghijkl" not in text


def test_tracebacks_are_redacted(json_stream: io.StringIO) -> None:
    try:
        raise RuntimeError("failed with password=hunter2")
    except RuntimeError:
        get_logger("test").exception("boom")
    assert "hunter2" not in json_stream.getvalue()
    assert "RuntimeError" in json_stream.getvalue()


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("password=hunter2&user=ada", "hunter2"),
        ('{"refresh_token": "r3fr3sh"}', "r3fr3sh"),
        ("api_key: 'k3y'", "k3y"),
        ("using sk-abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
        ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("PassWord=hunter2", "hunter2"),
        ("BEARER abcdefghijkl", "abcdefghijkl"),
        ("pa\u017fsword=hunter2", "hunter2"),  # a long s: ignoring case, an s
        ("api_\u212aey=k3y", "k3y"),  # the Kelvin sign: ignoring case, a k
    ],
)
def test_redact_text(text: str, leaked: str) -> None:
    assert leaked not in redact_text(text)


def test_console_format_is_readable() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="console", stream=stream)
    try:
        structlog.get_logger("test").info("hello", who="world")
    finally:
        configure_logging(level="INFO", fmt="console")
    output = stream.getvalue()
    assert "hello" in output
    assert "who=world" in output
    assert not output.lstrip().startswith("{")


def test_the_hint_search_on_lowered_ascii_is_the_search_ignoring_case() -> None:
    pieces = [
        "eyJ",
        "EYj",
        "bear",
        "Bearer",
        "BASIC",
        "PaSs",
        "secrEt",
        "toKen",
        "api-KEY",
        "Api_key",
        "apikey",
        "sk-",
        "SK-",
        ":/",
        "://",
        "x",
        " ",
        "é",
        "\u017f",
        "\u212a",
    ]
    draw = random.Random(7)
    for _ in range(3000):
        text = "".join(draw.choices(pieces, k=draw.randint(0, 4)))
        assert _may_hold_secret(text) == (_MAYBE_SECRET.search(text) is not None), text


class Colour(StrEnum):
    RED = "red"


def test_redact_secrets_keeps_what_holds_none() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    task_id = uuid.uuid4()
    event_dict = {
        "event": "request",
        "path": "/api/v1/tasks",
        "status": 202,
        "ms": 1.23,
        "ok": True,
        "actor": None,
        "task_id": task_id,
        "colour": Colour.RED,
        "cookie": "c",
        "note": f"sent {jwt}",
        "items": ["a", f"Bearer {jwt}"],
        "pair": ("a", "password=hunter2"),
        "headers": {"Authorization": "x", "accept": "json"},
        "level": "info",
    }
    assert redact_secrets(None, "info", event_dict) == {
        "event": "request",
        "path": "/api/v1/tasks",
        "status": 202,
        "ms": 1.23,
        "ok": True,
        "actor": None,
        "task_id": task_id,
        "colour": Colour.RED,
        "cookie": REDACTED,
        "note": f"sent {REDACTED}",
        "items": ["a", f"Bearer {REDACTED}"],
        "pair": ("a", f"password={REDACTED}"),
        "headers": {"Authorization": REDACTED, "accept": "json"},
        "level": "info",
    }
    assert event_dict["colour"] is Colour.RED


class Sample:
    def __repr__(self) -> str:
        return "<sample>"


def test_json_is_structlogs() -> None:
    event_dict = {
        "event": "caf\u00e9 \u2603",
        "n": 3,
        "ms": 0.1 + 0.2,
        "nan": float("nan"),
        "none": None,
        "nested": {"list": [1, "two", (3, 4)], "when": datetime(2026, 1, 1, tzinfo=UTC)},
        "id": uuid.UUID(int=1),
        "sample": Sample(),
    }
    expected = structlog.processors.JSONRenderer()(None, "info", dict(event_dict))
    assert render_json(None, "info", dict(event_dict)) == expected


@pytest.mark.parametrize(
    "now_ns",
    [1_767_225_600_123_456_789, 1_767_225_600_000_000_999, 1_767_225_601_000_001_000, 0],
)
def test_timestamps_are_structlogs(monkeypatch: pytest.MonkeyPatch, now_ns: int) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: now_ns)
    # `TimeStamper(fmt="iso", utc=True)`: `datetime.now(UTC)`, which takes the same clock
    # down to the microsecond, `isoformat()` and `Z` for `+00:00`.
    now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_ns // 1000)
    expected = now.isoformat().replace("+00:00", "Z")
    assert add_timestamp(None, "info", {})["timestamp"] == expected
    assert add_timestamp(None, "info", {})["timestamp"] == expected


@pytest.fixture
def records_handled(monkeypatch: pytest.MonkeyPatch) -> list[logging.LogRecord]:
    """Every standard-library record a logger handles meanwhile."""
    handled: list[logging.LogRecord] = []
    handle = logging.Logger.handle

    def record(logger: logging.Logger, record: logging.LogRecord) -> None:
        handled.append(record)
        handle(logger, record)

    monkeypatch.setattr(logging.Logger, "handle", record)
    return handled


@pytest.fixture
def quiet_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("test.quiet")
    logger.setLevel(logging.WARNING)
    yield logger
    logger.setLevel(logging.NOTSET)


def log_each_kind() -> None:
    log = get_logger("test.direct")
    with log_context(request_id="r-1"):
        log.info(
            "request",
            method="POST",
            path="/api/v1/tasks?token=abc",
            status=202,
            ms=1.23,
            password="hunter2",
            headers={"Authorization": "Bearer abcdefghijkl", "accept": "json"},
        )
        log.debug("below the root's level")
        try:
            raise RuntimeError("failed with password=hunter2")
        except RuntimeError:
            log.exception("boom", url="postgresql://u:pw123@db/x")
    get_logger("test.quiet").info("below its logger's level")
    get_logger("test.quiet").warning("at its logger's level", step=2)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_lines_written_directly_are_the_formatters(
    monkeypatch: pytest.MonkeyPatch,
    records_handled: list[logging.LogRecord],
    quiet_logger: logging.Logger,
    fmt: Literal["json", "console"],
) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_767_225_600_123_456_789)
    ours = io.StringIO()
    configure_logging(level="INFO", fmt=fmt, stream=ours)  # pytest's handlers go too
    try:
        log_each_kind()  # our handler alone: straight to its stream
        assert records_handled == []
        direct = ours.getvalue()
        # Another handler with the same formatter: records, and the formatter's chain.
        root = logging.getLogger()
        other = logging.StreamHandler(io.StringIO())
        other.setFormatter(root.handlers[0].formatter)
        root.addHandler(other)
        try:
            log_each_kind()
        finally:
            root.removeHandler(other)
    finally:
        configure_logging(level="INFO", fmt="console")
    handled = [record.levelno for record in records_handled]
    assert handled == [logging.INFO, logging.ERROR, logging.WARNING]
    assert direct == other.stream.getvalue() == ours.getvalue()[len(direct) :]
    assert len(direct.splitlines()) >= 3
    assert "r-1" in direct
    assert "at its logger's level" in direct
    assert "RuntimeError" in direct
    for hidden in ("hunter2", "abc", "abcdefghijkl", "pw123", "below"):
        assert hidden not in direct, hidden


def test_caplog_sees_structlog_lines(
    json_stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        get_logger("test").info("seen", step=1)
        get_logger("test").debug("unseen")
    assert [record.levelno for record in caplog.records] == [logging.INFO]
    assert [line["event"] for line in lines(json_stream)] == ["seen"]
