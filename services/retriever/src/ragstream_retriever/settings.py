"""The retriever's settings, read once from ``RAGSTREAM_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr

from ragstream_common.drift import DEFAULT_BASELINE_SIZE, DEFAULT_RECENT_SIZE
from ragstream_common.settings import ServiceSettings

__all__ = ["RetrieverSettings"]


class RetrieverSettings(ServiceSettings):
    """Where Weaviate is, how the index is named, and how search ranks and trims results."""

    service_name: str = "retriever"
    http_port: int = 8103

    weaviate_host: str = "127.0.0.1"
    weaviate_http_port: int = Field(default=8080, ge=1, le=65535)
    weaviate_grpc_port: int = Field(default=50051, ge=1, le=65535)
    weaviate_secure: bool = False
    # An API key, sent on REST and gRPC alike; None connects anonymously. The local stack sets
    # its node's key (ragstream_cli.stack.weaviate).
    weaviate_api_key: SecretStr | None = None
    # Seconds; a query that takes longer than this is better retried than waited for.
    weaviate_query_timeout: float = Field(default=10.0, gt=0)
    weaviate_insert_timeout: float = Field(default=60.0, gt=0)
    # Chunks live here; each document's version record (latest and live) in
    # "<collection>Versions". A new shape gets a new name and a re-index, never an in-place
    # migration: "Chunk", then "RagChunk" (issue 3: versions), then "RagTenantChunk" (issue 4:
    # native multi-tenancy, a shard per tenant).
    collection: str = Field(default="RagTenantChunk", pattern=r"^[A-Z][_0-9A-Za-z]*$")

    # Hybrid search: 0 is pure BM25, 1 is pure vector; a query's own alpha overrides it. On the
    # bundled evaluation set, 0.3-0.7 rank every question as written first, and 0.6-0.7 rank two
    # reworded ones higher than 0.5 does: too few to move it (the README).
    default_alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    # Chunks whose hybrid score (Weaviate's relative score fusion, 0..1 within one result set)
    # is below this are dropped; a query's own min_score overrides it. The default trims only
    # the tail: chunks near the bottom of both the BM25 and the vector ranking.
    min_score: float = Field(default=0.05, ge=0.0, le=1.0)
    # At most this many chunks of one document in a context, so one document cannot crowd out
    # the rest.
    max_chunks_per_doc: int = Field(default=3, ge=1)
    # Fetch top_k * overfetch candidates so that dedup still leaves top_k when it can.
    search_overfetch: int = Field(default=3, ge=1)
    max_search_candidates: int = Field(default=150, ge=1)
    # Hybrid searches one query may run: a second round when hiding non-live versions left the
    # context short, or when a document's version switched between the search and the lookup.
    max_search_rounds: int = Field(default=2, ge=1, le=5)

    # The vector size of the query model; vectors of any other size are refused as poison
    # because they could never be searched alongside the rest.
    embedding_dimensions: int = Field(default=384, ge=1)
    # The cores the query model uses (single-threaded forward passes at once on CPU); None:
    # torch's default (all cores).
    model_threads: int | None = Field(default=None, ge=1)

    # The two roles scale on different signals (index lag, query rate); a deployment may run one.
    index_role: bool = True
    search_role: bool = True
    # A new index group with a new collection re-reads the embeddings topic: a blue/green
    # re-index beside the live one.
    index_group_id: str = "retriever-index"
    # The index role applies the versions waiting, up to this many, as one batch: each write
    # step (record lookup, insert, switch, retirement) is one request for all of them.
    index_batch_max_messages: int = Field(default=64, ge=1)
    # A batch stays open while versions keep arriving (each within the quiet time of the last),
    # up to the longest wait: the embedder publishes a model call's documents over tens of ms,
    # and taking them as one batch instead of three or four makes a bulk ingest cheaper in the
    # retriever, Weaviate and Kafka. A lone version waits the quiet time only.
    index_batch_max_wait_ms: int = Field(default=500, ge=0)
    index_batch_quiet_ms: int = Field(default=50, ge=0)
    # The search role takes the queries waiting, up to this many, as one batch: one model call
    # embeds them all. A batch forms while the previous one is being searched; waiting for more
    # queries (above 0 ms) would add that wait to a lone query's latency.
    search_batch_max_messages: int = Field(default=32, ge=1)
    search_batch_max_wait_ms: int = Field(default=0, ge=0)
    search_group_id: str = "retriever-search"

    # Quality drift (ragstream_query_drift, ragstream_retrieval_score_shift): the first this many
    # queries a replica searches are its baseline, frozen once full, and the last
    # drift_recent_queries are compared against it. The alert thresholds in
    # ragstream_common.drift are chosen for the defaults; smaller windows are noisier.
    drift_baseline_queries: int = Field(default=DEFAULT_BASELINE_SIZE, ge=2)
    drift_recent_queries: int = Field(default=DEFAULT_RECENT_SIZE, ge=2)
