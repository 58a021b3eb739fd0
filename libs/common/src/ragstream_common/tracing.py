"""OpenTelemetry tracing, set up once per process: one trace per document and per query.

A trace starts where work enters the platform (a gateway request, a document ``ragstream ingest``
publishes) and its id becomes the work's correlation id. From there FastStream's
``KafkaTelemetryMiddleware`` (see ``messaging.create_broker``) writes a W3C ``traceparent`` header
on every message and continues the trace in the consumer, and ``messaging.publish_event`` keeps
each message's ``correlation_id`` header equal to that trace's id. So a ``correlation_id`` found in
a log line is the trace to open, and the ``trace_id`` the logs carry finds its lines.

Spans are made whether or not they are exported: without ``otlp_endpoint`` the ids still exist and
travel, and nothing leaves the process. The OpenTelemetry SDK does the work; this module only
chooses its exporter, sampler and resource from the settings, and names the spans we start, and
while no span processor is installed its spans are not recorded (``_ProcessorAwareProvider``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)
from opentelemetry.util._decorator import _agnosticcontextmanager
from opentelemetry.util.types import Attributes

from ragstream_common.settings import ServiceSettings

__all__ = [
    "build_tracer_provider",
    "child_span",
    "configure_tracing",
    "current_trace_id",
    "new_trace",
    "otlp_traces_url",
    "remote_parent",
    "span_processors",
    "trace_id_of",
    "tracer",
]

# The path of the traces signal under an OTLP/HTTP collector's base URL.
_TRACES_PATH = "/v1/traces"

_configured: TracerProvider | None = None


def otlp_traces_url(endpoint: str) -> str:
    """Return the OTLP/HTTP traces URL for ``endpoint``: a collector's base URL or that URL.

    Like ``OTEL_EXPORTER_OTLP_ENDPOINT``, a base URL (``http://collector:4318``) gets the signal's
    path; a URL that already ends with it is kept as it is.

    Args:
        endpoint: The ``otlp_endpoint`` setting.
    """
    base = endpoint.rstrip("/")
    return base if base.endswith(_TRACES_PATH) else base + _TRACES_PATH


def span_processors(settings: ServiceSettings) -> list[SpanProcessor]:
    """Return what to do with finished spans: nothing without an endpoint, else batch and export.

    Building the exporter opens no connection; the batch processor's thread sends spans later.

    Args:
        settings: The service's ``otlp_endpoint`` (and ``otlp_protocol``, HTTP and protobuf).
    """
    if settings.otlp_endpoint is None:
        return []
    exporter = OTLPSpanExporter(endpoint=otlp_traces_url(settings.otlp_endpoint))
    # Batched: a span never waits on the collector, which may be slow or away.
    return [BatchSpanProcessor(exporter)]


class _ProcessorAwareProvider(TracerProvider):
    """The SDK's provider, whose spans are recorded only once a span processor can take them.

    The SDK records every sampled span, processors or not, and a recorded span costs several times
    an unrecorded one (about 125 µs of the 200 that FastStream's telemetry middleware adds to each
    publish, measured here). Without a processor nothing could ever read them, so until one is
    added the spans are unrecorded, with the ids and the sampled flag the SDK would give them: the
    traces still travel, and a downstream service that does export keeps the same decision.
    """

    exporting = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.exporting = True

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Tracer:
        tracer = super().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if not isinstance(tracer, sdk_trace.Tracer):  # the SDK disabled (OTEL_SDK_DISABLED)
            return tracer
        return _ProcessorAwareTracer(tracer, self)


class _ProcessorAwareTracer(Tracer):
    """Starts the SDK tracer's spans while its provider exports, unrecorded ones until then."""

    def __init__(self, tracer: sdk_trace.Tracer, provider: _ProcessorAwareProvider) -> None:
        self._tracer = tracer
        self._provider = provider

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        if self._provider.exporting:
            return self._tracer.start_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )
        # The ids and flags the SDK's own start_span gives a span, without the span.
        ids = self._tracer.id_generator
        parent = trace.get_current_span(context).get_span_context()
        root = not parent.is_valid
        trace_id = ids.generate_trace_id() if root else parent.trace_id
        decision = self._tracer.sampler.should_sample(
            context, trace_id, name, kind, attributes, links
        )
        flags = TraceFlags.SAMPLED if decision.decision.is_sampled() else TraceFlags.DEFAULT
        random_trace_id = ids.is_trace_id_random() if root else parent.trace_flags.random_trace_id
        if random_trace_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        return NonRecordingSpan(
            SpanContext(
                trace_id,
                ids.generate_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(flags),
                trace_state=decision.trace_state,
            )
        )

    # The API's own decorator (the SDK's tracer uses it too): the span also works as a decorator
    # of coroutines, as the interface promises.
    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


def build_tracer_provider(settings: ServiceSettings) -> TracerProvider:
    """Build a tracer provider for the service, without making it the process's.

    Args:
        settings: The service's name (the spans' ``service.name``), sampling and export.
    """
    provider = _ProcessorAwareProvider(
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
        # A trace is sampled or not where it starts; every later hop follows that decision, so a
        # trace is recorded whole or not at all. Unsampled spans still carry valid ids.
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    for processor in span_processors(settings):
        provider.add_span_processor(processor)
    return provider


def configure_tracing(settings: ServiceSettings) -> TracerProvider:
    """Make the settings' tracer provider the process's; later calls return the first one.

    OpenTelemetry accepts one global provider per process. Tracers taken before this call (the
    broker's, built in ``create_app``) start delegating to it from then on.

    Args:
        settings: The service's settings.
    """
    global _configured
    if _configured is None:
        _configured = build_tracer_provider(settings)
        trace.set_tracer_provider(_configured)
    return _configured


# Taken once: asking the provider for a tracer builds a new one each time (about 20 µs, more than
# the unrecorded span itself). Until configure_tracing runs this is the API's proxy, which hands
# every span to the process's provider once there is one.
_TRACER = trace.get_tracer("ragstream")


def tracer() -> Tracer:
    """Return the tracer for the spans ragstream starts itself."""
    return _TRACER


def trace_id_of(span_context: SpanContext) -> str | None:
    """Return the trace id of ``span_context`` as 32 lowercase hex digits, None if invalid.

    A context is invalid when no tracer provider was configured (OpenTelemetry's no-op default).
    """
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def current_trace_id() -> str | None:
    """Return the id of the trace being worked on, None outside any trace."""
    return trace_id_of(trace.get_current_span().get_span_context())


@contextmanager
def new_trace(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes = None
) -> Iterator[Span]:
    """Start the root span of a new trace, whatever span is current, and make it current.

    For the points where work enters the platform: the trace id is the work's correlation id.

    Args:
        name: The span's name.
        kind: SERVER for a request, PRODUCER for a message sent from outside any trace.
        attributes: The span's attributes.
    """
    with tracer().start_as_current_span(
        name, context=Context(), kind=kind, attributes=attributes
    ) as span:
        yield span


def remote_parent(headers: Mapping[str, str]) -> SpanContext | None:
    """Return the span context a message's ``traceparent`` header names, None if it has none.

    Args:
        headers: The message's headers, decoded.
    """
    span_context = trace.get_current_span(propagate.extract(headers)).get_span_context()
    return span_context if span_context.is_valid else None


@contextmanager
def child_span(
    name: str,
    parent: SpanContext | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
) -> Iterator[Span]:
    """Start a span in ``parent``'s trace (linked to the current span), and make it current.

    For one record of a batch: FastStream gives the batch a trace of its own, linked to each of
    its records' traces; the work done for one record belongs in that record's trace.

    Args:
        name: The span's name.
        parent: The record's span context; None continues the current trace instead.
        kind: The span's kind.
        attributes: The span's attributes.
    """
    if parent is None:
        with tracer().start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span
        return
    current = trace.get_current_span().get_span_context()
    with tracer().start_as_current_span(
        name,
        context=trace.set_span_in_context(NonRecordingSpan(parent)),
        kind=kind,
        attributes=attributes,
        links=[Link(current)] if current.is_valid else None,
    ) as span:
        yield span
