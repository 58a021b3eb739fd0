"""structlog set up once per process: JSON lines in production, readable on a terminal.

The standard library's loggers (FastStream, aiokafka, uvicorn) are routed through the same
processors, so every line a service prints is one JSON object with the same keys, and every line
written while a message is handled carries that message's ``correlation_id``, and every line
written inside a span its ``trace_id`` and ``span_id``. Secrets and e-mail addresses are masked in
every line (``redaction.py``).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import structlog
from opentelemetry import trace

from ragstream_common.redaction import redact_event

__all__ = [
    "add_trace_ids",
    "bind_correlation_id",
    "configure_logging",
    "current_correlation_id",
    "get_logger",
]

_correlation_id: ContextVar[str | None] = ContextVar("ragstream_correlation_id", default=None)


def bind_correlation_id(correlation_id: str | None) -> None:
    """Make ``correlation_id`` the current one for logs and for messages published from here on.

    Args:
        correlation_id: The id travelling in the Kafka headers of the message being handled.
    """
    _correlation_id.set(correlation_id)
    if correlation_id is None:
        structlog.contextvars.unbind_contextvars("correlation_id")
    else:
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


def current_correlation_id() -> str | None:
    """Return the correlation id of the message or request being handled, if any."""
    return _correlation_id.get()


def configure_logging(service: str, level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the standard library's logging for this process.

    Args:
        service: The service name stamped on every line.
        level: The minimum level, by name.
        json: JSON lines when True, console lines when False, and when None JSON unless stdout
            is a terminal.
    """
    use_json = (not sys.stdout.isatty()) if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _stamp_service(service),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Last before rendering, for our lines and the libraries' alike, tracebacks included.
            redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # These libraries own loggers with handlers of their own; send them through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "aiokafka"):
        library_logger = logging.getLogger(name)
        library_logger.handlers.clear()
        library_logger.propagate = True
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Clients log every HTTP request at INFO (Weaviate's REST calls, LiteLLM's); not worth a line.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def add_trace_ids(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A structlog processor: stamp the current span's ``trace_id`` and ``span_id`` on the line.

    Outside any span (or with tracing not configured) the line is left as it is; keys the line
    already has are kept.
    """
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(span_context.span_id))
    return event_dict


def _stamp_service(service: str) -> structlog.types.Processor:
    def stamp(
        _logger: object, _method: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return stamp


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger; call ``configure_logging`` once at startup first."""
    return structlog.stdlib.get_logger(name)
