"""OpenTelemetry traces, on only when an OTLP endpoint is configured.

With the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set,
`configure()` installs the SDK's tracer provider with a batching OTLP/HTTP
exporter and instruments FastAPI (an incoming `traceparent` is honoured), httpx
(LLM providers' HTTP requests) and pydantic-ai (agent runs, model requests).
The other standard variables apply as usual (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`,
`OTEL_SDK_DISABLED`).

Unset, nothing is set up and no SDK is imported: every helper here checks one
flag and returns at once. A task carries its trace across the queue: the work
item holds the W3C `traceparent` of the code that queued it, and the task row
the one of its submission, which also gives every event of the task its
`trace_id`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from structlog.types import EventDict, WrappedLogger

if TYPE_CHECKING:
    from fastapi import FastAPI

TRACER_NAME = "devteam"
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$"
"""A W3C `traceparent`; its one group is the trace id (also a Postgres regular expression:
the event rows' trace ids are cut out of it in SQL)."""
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)

_enabled = False
_provider: Any = None


def wanted(environ: dict[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, the SDK not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _enabled


def configure(service_name: str) -> bool:
    """Set up tracing for this process when the environment asks for it (once)."""
    global _enabled, _provider
    if _enabled or not wanted():
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    _instrument_llm_agents()
    _provider = provider
    _enabled = True
    return True


def _instrument_llm_agents() -> None:
    # Imported here: pydantic-ai is the LLM stack, loaded only when tracing is on.
    from pydantic_ai import Agent, InstrumentationSettings

    # Prompts and answers stay out of the spans: they may hold code and secrets.
    Agent.instrument_all(InstrumentationSettings(include_content=False))


def instrument_app(app: FastAPI) -> None:
    """Server spans for every request of `app`, continuing an incoming `traceparent`."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="health/.*,metrics")


def shutdown() -> None:
    """Send the spans still buffered (at process exit)."""
    if _provider is not None:
        _provider.force_flush()


@contextmanager
def span(name: str, **attributes: str | int | float | bool | None) -> Iterator[None]:
    """A span around the block, a child of the current one (nothing when tracing is off)."""
    if not _enabled:
        yield
        return
    from opentelemetry import trace

    tracer = trace.get_tracer(TRACER_NAME)
    values = {k.replace("_", "."): v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, attributes=values):
        yield


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to carry across a process boundary."""
    if not _enabled:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Run the block inside the trace of `traceparent` (from a queue message or a task)."""
    if not _enabled or not traceparent:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) a `traceparent` names."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent)
    return match.group(1) if match else None


def current_trace_id() -> str | None:
    if not _enabled:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def add_trace_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current trace id on every line logged inside a trace."""
    if _enabled and "trace_id" not in event_dict and (trace_id := current_trace_id()):
        event_dict["trace_id"] = trace_id
    return event_dict
