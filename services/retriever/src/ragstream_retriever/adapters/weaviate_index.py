"""The chunk index on Weaviate, through the v4 client's async API.

Two collections:

- ``<collection>`` (``Chunk``): one object per chunk of the current version of each document,
  with its vector (self-provided, no vectorizer) and BM25 over text, title and heading path.
- ``<collection>Versions`` (``ChunkVersions``): one small object per document holding the highest
  version applied, so that a deletion (which leaves no chunk behind) still blocks an older version
  from coming back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.init import AdditionalConfig, Timeout
from weaviate.classes.query import Filter, MetadataQuery, Sort
from weaviate.collections.classes.data import DataObject
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

from ragstream_common.events import utc_now
from ragstream_common.logging import get_logger
from ragstream_retriever.domain import IndexedChunk, SearchHit, document_object_id
from ragstream_retriever.settings import RetrieverSettings

__all__ = ["IndexWriteError", "WeaviateIndex", "chunk_properties", "version_properties"]

_log = get_logger(__name__)

# Properties a search hit needs; the vector and bookkeeping fields stay on the server.
_HIT_PROPERTIES = ["chunk_id", "doc_id", "title", "text", "position", "heading_path"]
# BM25 runs over what a reader sees; ids, hashes and sources are for filters only.
_SEARCHED_PROPERTIES = ["text", "title", "heading_path"]
# One gRPC batch per slice keeps each request far below the server's message size limit.
_UPSERT_SLICE = 256
# delete_many removes at most the server's QUERY_MAXIMUM_RESULTS (10,000 by default) per call;
# fewer matches than this mean nothing can be left behind.
_DELETE_PASS_HINT = 1000


class IndexWriteError(RuntimeError):
    """Weaviate refused some writes; the message is redelivered and the write retried."""


def _keyword(name: str) -> Property:
    # Whole-value tokenization makes equality filters exact; not searchable keeps it out of BM25.
    return Property(
        name=name,
        data_type=DataType.TEXT,
        tokenization=Tokenization.FIELD,
        index_filterable=True,
        index_searchable=False,
    )


def chunk_properties() -> list[Property]:
    """Return the schema of the chunk collection."""
    return [
        _keyword("tenant"),
        _keyword("doc_id"),
        _keyword("chunk_id"),
        Property(name="title", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
        _keyword("source"),
        Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
        Property(
            name="heading_path", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.WORD
        ),
        Property(name="position", data_type=DataType.INT),
        Property(name="version", data_type=DataType.INT, index_range_filters=True),
        _keyword("content_hash"),
        _keyword("model"),
        Property(name="published_at", data_type=DataType.DATE),
    ]


def version_properties() -> list[Property]:
    """Return the schema of the per-document version collection."""
    return [
        _keyword("tenant"),
        _keyword("doc_id"),
        Property(name="version", data_type=DataType.INT),
        Property(name="chunk_count", data_type=DataType.INT),
        Property(name="updated_at", data_type=DataType.DATE),
    ]


def _document_filter(tenant: str, doc_id: str) -> Any:
    return Filter.by_property("tenant").equal(tenant) & Filter.by_property("doc_id").equal(doc_id)


class WeaviateIndex:
    """The ``ChunkIndex`` port on Weaviate.

    Args:
        client: An async client; ``connect`` opens it.
        collection: The chunk collection's name; versions live in ``<collection>Versions``.
    """

    def __init__(self, client: weaviate.WeaviateAsyncClient, collection: str) -> None:
        self._client = client
        self.collection_name = collection
        self.versions_name = f"{collection}Versions"
        self._chunks = client.collections.use(collection)
        self._versions = client.collections.use(self.versions_name)

    @classmethod
    def from_settings(cls, settings: RetrieverSettings) -> WeaviateIndex:
        """Build an unconnected index from the settings; no I/O happens here.

        Args:
            settings: Where Weaviate is and what the collection is called.
        """
        client = weaviate.use_async_with_custom(
            http_host=settings.weaviate_host,
            http_port=settings.weaviate_http_port,
            http_secure=settings.weaviate_secure,
            grpc_host=settings.weaviate_host,
            grpc_port=settings.weaviate_grpc_port,
            grpc_secure=settings.weaviate_secure,
            additional_config=AdditionalConfig(
                timeout=Timeout(
                    init=5,
                    query=settings.weaviate_query_timeout,
                    insert=settings.weaviate_insert_timeout,
                ),
            ),
            # Without this, connect() asks pypi.org for the latest client version (and the
            # server for OIDC settings we do not use): a call home, and seconds lost offline.
            skip_init_checks=True,
        )
        return cls(client, settings.collection)

    async def connect(self, wait_seconds: float = 30.0) -> None:
        """Connect, waiting up to ``wait_seconds`` for Weaviate to become ready.

        Args:
            wait_seconds: How long a starting Weaviate may take before we give up.

        Raises:
            TimeoutError: Weaviate was not ready in time.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                await self._client.connect()
                if await self._client.is_ready():
                    break
            except WeaviateBaseError as error:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"Weaviate not ready: {error}") from error
                _log.info("weaviate_not_ready", error=str(error)[:200])
            else:
                if time.monotonic() >= deadline:
                    raise TimeoutError("Weaviate answered but is not ready")
            await asyncio.sleep(1.0)
        meta = await self._client.get_meta()
        _log.info("weaviate_connected", version=meta.get("version"))

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    async def ensure_collections(self) -> None:
        """Create both collections if they do not exist; safe to race with other replicas."""
        await self._ensure(
            self.collection_name,
            properties=chunk_properties(),
            # Vectors come from the embedder; cosine, as the model's vectors are normalised.
            vector_config=Configure.Vectors.self_provided(),
        )
        await self._ensure(
            self.versions_name,
            properties=version_properties(),
            # Bookkeeping only: never searched by vector, so no vector index to maintain.
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.flat()
            ),
        )

    async def _ensure(self, name: str, **config: Any) -> None:
        if await self._client.collections.exists(name):
            return
        try:
            await self._client.collections.create(name, **config)
            _log.info("collection_created", collection=name)
        except UnexpectedStatusCodeError:
            # Another replica may have created it between our check and our request.
            if not await self._client.collections.exists(name):
                raise

    async def drop_collections(self) -> None:
        """Delete both collections and everything in them (tests and re-index tooling)."""
        await self._client.collections.delete([self.collection_name, self.versions_name])

    async def indexed_version(self, tenant: str, doc_id: str) -> int | None:
        """Return the highest version applied for the document, from its record or its chunks.

        Both are read, so that the answer is right even if the record was lost or never written
        (a crash between the chunk writes and the record).

        Args:
            tenant: The tenant owning the document.
            doc_id: The document id.
        """
        record, newest = await asyncio.gather(
            self._versions.query.fetch_object_by_id(
                document_object_id(tenant, doc_id), return_properties=["version"]
            ),
            self._chunks.query.fetch_objects(
                filters=_document_filter(tenant, doc_id),
                sort=Sort.by_property("version", ascending=False),
                limit=1,
                return_properties=["version"],
            ),
        )
        versions = [int(obj.properties["version"]) for obj in newest.objects]  # type: ignore[arg-type]
        if record is not None:
            versions.append(int(record.properties["version"]))  # type: ignore[arg-type]
        return max(versions, default=None)

    async def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        """Insert or overwrite ``chunks`` by their deterministic ids.

        Args:
            chunks: The chunks of one document version.

        Raises:
            IndexWriteError: Weaviate rejected some objects.
        """
        for start in range(0, len(chunks), _UPSERT_SLICE):
            objects = [
                DataObject(
                    properties=chunk.properties(), uuid=chunk.object_id, vector=list(chunk.vector)
                )
                for chunk in chunks[start : start + _UPSERT_SLICE]
            ]
            result = await self._chunks.data.insert_many(objects)
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise IndexWriteError(
                    f"{len(result.errors)} of {len(objects)} chunks rejected: {first.message}"
                )

    async def delete_versions_below(self, tenant: str, doc_id: str, version: int) -> int:
        """Delete the document's chunks of versions older than ``version``.

        Args:
            tenant: The tenant owning the document.
            doc_id: The document id.
            version: The version that stays.

        Returns:
            How many chunks were deleted.

        Raises:
            IndexWriteError: Some deletions failed.
        """
        where = _document_filter(tenant, doc_id) & Filter.by_property("version").less_than(version)
        deleted = 0
        while True:
            result = await self._chunks.data.delete_many(where=where)
            if result.failed:
                raise IndexWriteError(f"{result.failed} of {result.matches} deletions failed")
            deleted += result.successful
            if result.matches < _DELETE_PASS_HINT:
                return deleted

    async def record_version(
        self, tenant: str, doc_id: str, version: int, chunk_count: int
    ) -> None:
        """Remember ``version`` as the document's applied version.

        Args:
            tenant: The tenant owning the document.
            doc_id: The document id.
            version: The version just applied.
            chunk_count: Its chunk count (0 for a deletion).

        Raises:
            IndexWriteError: Weaviate rejected the record.
        """
        properties: dict[str, Any] = {
            "tenant": tenant,
            "doc_id": doc_id,
            "version": version,
            "chunk_count": chunk_count,
            "updated_at": utc_now(),
        }
        record = DataObject(properties=properties, uuid=document_object_id(tenant, doc_id))
        # A batch write overwrites an existing object with the same id: an upsert.
        result = await self._versions.data.insert_many([record])
        if result.has_errors:
            raise IndexWriteError(
                f"version record rejected: {next(iter(result.errors.values())).message}"
            )

    async def search(
        self, *, tenant: str, text: str, vector: Sequence[float], alpha: float, limit: int
    ) -> list[SearchHit]:
        """Return up to ``limit`` of the tenant's chunks by hybrid relevance, best first.

        Args:
            tenant: Only this tenant's chunks are candidates.
            text: The query text, for BM25.
            vector: The query vector, for the vector half.
            alpha: 0 is pure BM25, 1 pure vector.
            limit: How many candidates to return.
        """
        result = await self._chunks.query.hybrid(
            query=text,
            vector=list(vector),
            alpha=alpha,
            limit=limit,
            query_properties=_SEARCHED_PROPERTIES,
            filters=Filter.by_property("tenant").equal(tenant),
            return_metadata=MetadataQuery(score=True),
            return_properties=_HIT_PROPERTIES,
        )
        hits = []
        for obj in result.objects:
            # Untyped collection: properties come back as a loose mapping of Weaviate values.
            props: dict[str, Any] = dict(obj.properties)
            hits.append(
                SearchHit(
                    chunk_id=str(props["chunk_id"]),
                    doc_id=str(props["doc_id"]),
                    title=str(props.get("title") or ""),
                    text=str(props.get("text") or ""),
                    position=int(props.get("position") or 0),
                    heading_path=tuple(str(part) for part in props.get("heading_path") or ()),
                    score=float(obj.metadata.score or 0.0),
                )
            )
        return hits

    async def count(self, tenant: str | None = None, doc_id: str | None = None) -> int:
        """Return how many chunks the index holds, optionally for one tenant or document.

        Args:
            tenant: Count only this tenant's chunks.
            doc_id: Count only this document's chunks (with ``tenant``).
        """
        filters: Any = None
        if tenant is not None and doc_id is not None:
            filters = _document_filter(tenant, doc_id)
        elif tenant is not None:
            filters = Filter.by_property("tenant").equal(tenant)
        result = await self._chunks.aggregate.over_all(filters=filters, total_count=True)
        return int(result.total_count or 0)
