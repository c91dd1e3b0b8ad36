"""Logs carry request context and never carry secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from devteam.observability.logging import (
    REDACTED,
    configure_logging,
    get_logger,
    log_context,
    redact_text,
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
