"""The chunk index on Weaviate, through the v4 client's async API.

Both collections use Weaviate's native multi-tenancy: each ragstream tenant is a Weaviate tenant
(its own shard, created on its first write), and every read and write goes through
``collection.with_tenant(tenant)``. A request of one tenant addresses only that tenant's shard,
so no filter, bug in a filter or query text can reach another tenant's objects.

Two collections:

- ``<collection>`` (``RagTenantChunk``): one object per chunk per document version, with its
  vector (self-provided, no vectorizer) and BM25 over text, title and heading path. Two versions
  of a document coexist here for the moment between the new one's inserts and the old one's
  retirement.
- ``<collection>Versions`` (``RagTenantChunkVersions``): one small object per document, the
  record that says which version is live (readers filter on it) and which is the latest applied
  (the stale check). Being one object, it is replaced in one write: that write is the switch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import weaviate
from weaviate.auth import AuthCredentials
from weaviate.classes.config import (
    Configure,
    ConsistencyLevel,
    DataType,
    Property,
    Tokenization,
)
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.collections.classes.data import DataObject
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

from ragstream_common.events import utc_now
from ragstream_common.logging import get_logger
from ragstream_retriever.domain import (
    DocumentRecord,
    IndexedChunk,
    LiveVersion,
    MetadataFilter,
    SearchHit,
    document_object_id,
    is_tenant_name,
)
from ragstream_retriever.settings import RetrieverSettings

__all__ = [
    "IndexWriteError",
    "WeaviateIndex",
    "chunk_properties",
    "search_filter",
    "version_properties",
    "weaviate_credentials",
]

_log = get_logger(__name__)

# Properties a search hit needs (the version, to keep only live ones); the vector and the other
# bookkeeping fields stay on the server.
_HIT_PROPERTIES = [
    "chunk_id",
    "doc_id",
    "title",
    "text",
    "position",
    "heading_path",
    "version",
    "source",
    "tags",
]
_RECORD_PROPERTIES = [
    "tenant",
    "doc_id",
    "latest_version",
    "live_version",
    "live_doc_hash",
    "live_fingerprint",
    "live_chunk_count",
]
# BM25 runs over what a reader sees; ids, hashes and sources are for filters only.
_SEARCHED_PROPERTIES = ["text", "title", "heading_path"]
# One gRPC batch per slice keeps each request far below the server's message size limit.
_INSERT_SLICE = 256
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
        # For tag filters (contains_any): whole-value tokens, not in BM25.
        Property(
            name="tags",
            data_type=DataType.TEXT_ARRAY,
            tokenization=Tokenization.FIELD,
            index_filterable=True,
            index_searchable=False,
        ),
        Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
        Property(
            name="heading_path", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.WORD
        ),
        Property(name="position", data_type=DataType.INT),
        Property(name="version", data_type=DataType.INT),
        _keyword("doc_hash"),
        _keyword("content_hash"),
        _keyword("model"),
        Property(name="published_at", data_type=DataType.DATE),
    ]


def version_properties() -> list[Property]:
    """Return the schema of the per-document version collection."""
    return [
        _keyword("tenant"),
        _keyword("doc_id"),
        Property(name="latest_version", data_type=DataType.INT),
        Property(name="live_version", data_type=DataType.INT),
        _keyword("live_doc_hash"),
        _keyword("live_fingerprint"),
        Property(name="live_chunk_count", data_type=DataType.INT),
        Property(name="updated_at", data_type=DataType.DATE),
    ]


def _document_filter(tenant: str, doc_id: str) -> Any:
    return Filter.by_property("tenant").equal(tenant) & Filter.by_property("doc_id").equal(doc_id)


def search_filter(tenant: str, filters: MetadataFilter | None = None) -> Any:
    """Return the Weaviate filter of one search: the tenant AND every metadata condition.

    The tenant condition is always the outermost AND, so no metadata condition can widen the
    search beyond the tenant; this is the only place search filters are built.

    Args:
        tenant: The tenant whose chunks are searched.
        filters: The query's metadata conditions (None: none).
    """
    # Redundant with the tenant's shard, on purpose: a second, independent guard.
    conditions: list[Any] = [Filter.by_property("tenant").equal(tenant)]
    if filters is not None:
        if filters.sources:
            # ``source`` is a whole-value keyword, so equality is exact; any of them matches.
            conditions.append(
                Filter.any_of([Filter.by_property("source").equal(s) for s in filters.sources])
            )
        if filters.tags:
            conditions.append(Filter.by_property("tags").contains_any(list(filters.tags)))
        if filters.published_after is not None:
            conditions.append(
                Filter.by_property("published_at").greater_or_equal(filters.published_after)
            )
        if filters.published_before is not None:
            conditions.append(
                Filter.by_property("published_at").less_or_equal(filters.published_before)
            )
    return conditions[0] if len(conditions) == 1 else Filter.all_of(conditions)


def _record_properties(record: DocumentRecord, written_at: datetime) -> dict[str, Any]:
    return {
        "tenant": record.tenant,
        "doc_id": record.doc_id,
        "latest_version": record.latest_version,
        "live_version": record.live_version,
        "live_doc_hash": record.live_doc_hash,
        "live_fingerprint": record.live_fingerprint,
        "live_chunk_count": record.live_chunk_count,
        "updated_at": written_at,
    }


def _record(properties: Any) -> DocumentRecord:
    # Untyped collection: integers come back as ints, absent text as None.
    props: dict[str, Any] = dict(properties)
    return DocumentRecord(
        tenant=str(props["tenant"]),
        doc_id=str(props["doc_id"]),
        latest_version=int(props["latest_version"]),
        live_version=int(props["live_version"]),
        live_doc_hash=props.get("live_doc_hash"),
        live_fingerprint=props.get("live_fingerprint"),
        live_chunk_count=int(props.get("live_chunk_count") or 0),
    )


def weaviate_credentials(settings: RetrieverSettings) -> AuthCredentials | None:
    """Return the client's credentials: the API key if one is set, else None (anonymous).

    Args:
        settings: ``weaviate_api_key``.
    """
    if settings.weaviate_api_key is None:
        return None
    return Auth.api_key(settings.weaviate_api_key.get_secret_value())


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
        # The switch is a write to this collection that readers must see once it is acknowledged:
        # on a replicated cluster, QUORUM writes and QUORUM reads always overlap on a replica
        # holding the latest record (on one node it changes nothing).
        self._versions = client.collections.use(self.versions_name).with_consistency_level(
            ConsistencyLevel.QUORUM
        )
        # Tenants known to exist, per collection. Weaviate answers a read of a tenant it does not
        # have with an error, not with nothing; tenants are created (on first write) and never
        # removed here, so a positive answer can be remembered for the life of the process.
        self._known_tenants: dict[str, set[str]] = {
            self.collection_name: set(),
            self.versions_name: set(),
        }

    async def _has_tenant(self, collection: Any, tenant: str) -> bool:
        """Return whether ``collection`` has a shard for ``tenant`` (one request, then cached)."""
        known = self._known_tenants[collection.name]
        if tenant in known:
            return True
        # A name Weaviate cannot hold has no data, and asking about it would only be an error.
        if not is_tenant_name(tenant) or not await collection.tenants.exists(tenant):
            return False
        known.add(tenant)
        return True

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
            auth_credentials=weaviate_credentials(settings),
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
            PermissionError: Weaviate refused the credentials (``weaviate_api_key``): waiting
                would not change that.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                await self._client.connect()
                if await self._client.is_ready():
                    break
            except WeaviateBaseError as error:
                if isinstance(error, UnexpectedStatusCodeError) and error.status_code in (401, 403):
                    raise PermissionError(
                        "Weaviate refused the retriever's credentials"
                        f" (RAGSTREAM_WEAVIATE_API_KEY): {error}"
                    ) from error
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
        """Create both collections if they do not exist; safe to race with other replicas.

        Raises:
            RuntimeError: A collection of that name exists without multi-tenancy (a collection
                of an older shape): it cannot be used, pick another ``collection`` name.
        """
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
        if not await self._client.collections.exists(name):
            try:
                await self._client.collections.create(
                    name,
                    # A tenant's shard appears with its first write and is loaded when used.
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                    ),
                    **config,
                )
                _log.info("collection_created", collection=name)
                return
            except UnexpectedStatusCodeError:
                # Another replica may have created it between our check and our request.
                if not await self._client.collections.exists(name):
                    raise
        existing = await self._client.collections.use(name).config.get()
        if not existing.multi_tenancy_config.enabled:
            raise RuntimeError(
                f"collection {name!r} exists without multi-tenancy (an older shape); "
                "set another RAGSTREAM_COLLECTION and re-index into it"
            )

    async def drop_collections(self) -> None:
        """Delete both collections and everything in them (tests and re-index tooling)."""
        await self._client.collections.delete([self.collection_name, self.versions_name])

    async def document_records(
        self, tenant: str, doc_ids: Collection[str]
    ) -> dict[str, DocumentRecord]:
        """Return the version records of those of ``doc_ids`` that have one, in one request.

        Args:
            tenant: The tenant owning the documents.
            doc_ids: The documents to look up.
        """
        found = await self._records_of(tenant, doc_ids, _RECORD_PROPERTIES)
        records = (_record(properties) for properties in found)
        return {record.doc_id: record for record in records}

    async def live_versions(self, tenant: str, doc_ids: Collection[str]) -> dict[str, LiveVersion]:
        """Return the live version of each of ``doc_ids`` that has a record, in one request.

        On the query path: only the three properties a reader needs come back.

        Args:
            tenant: The tenant owning the documents.
            doc_ids: The documents to look up.
        """
        found = await self._records_of(
            tenant, doc_ids, ["doc_id", "live_version", "live_chunk_count"]
        )
        return {
            str(props["doc_id"]): LiveVersion(
                version=int(props["live_version"]), chunk_count=int(props["live_chunk_count"])
            )
            for props in found
        }

    async def _records_of(
        self, tenant: str, doc_ids: Collection[str], properties: list[str]
    ) -> list[dict[str, Any]]:
        """Return ``properties`` of the records of those of ``doc_ids`` that have one."""
        if not doc_ids or not await self._has_tenant(self._versions, tenant):
            return []
        ids = [document_object_id(tenant, doc_id) for doc_id in doc_ids]
        result = await self._versions.with_tenant(tenant).query.fetch_objects(
            filters=Filter.by_id().contains_any(ids),
            limit=len(ids),
            return_properties=properties,
        )
        return [dict(obj.properties) for obj in result.objects]

    async def write_records(self, records: Sequence[DocumentRecord]) -> None:
        """Replace each document's version record with the one given: one write per tenant.

        Args:
            records: The records to store, at most one per document.

        Raises:
            IndexWriteError: Weaviate rejected some of them (the others may be written).
        """
        written_at = utc_now()
        for tenant in sorted({record.tenant for record in records}):
            objects = [
                DataObject(
                    properties=_record_properties(record, written_at),
                    uuid=document_object_id(record.tenant, record.doc_id),
                )
                for record in records
                if record.tenant == tenant
            ]
            # A batch write replaces an existing object with the same id as a whole: an upsert.
            # The batch path creates the tenant's shard if this is the tenant's first write.
            result = await self._versions.with_tenant(tenant).data.insert_many(objects)
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise IndexWriteError(
                    f"{len(result.errors)} of {len(objects)} version records rejected: "
                    f"{first.message}"
                )
            self._known_tenants[self.versions_name].add(tenant)

    async def insert(self, chunks: Sequence[IndexedChunk]) -> None:
        """Write ``chunks`` under their deterministic ids (a redelivery overwrites, not adds).

        Args:
            chunks: The chunks of one document version (so of one tenant).

        Raises:
            IndexWriteError: Weaviate rejected some objects.
        """
        for tenant in sorted({chunk.tenant for chunk in chunks}):
            await self._insert_tenant(tenant, [c for c in chunks if c.tenant == tenant])

    async def _insert_tenant(self, tenant: str, chunks: Sequence[IndexedChunk]) -> None:
        shard = self._chunks.with_tenant(tenant)
        for start in range(0, len(chunks), _INSERT_SLICE):
            objects = [
                DataObject(
                    properties=chunk.properties(), uuid=chunk.object_id, vector=list(chunk.vector)
                )
                for chunk in chunks[start : start + _INSERT_SLICE]
            ]
            result = await shard.data.insert_many(objects)
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise IndexWriteError(
                    f"{len(result.errors)} of {len(objects)} chunks rejected: {first.message}"
                )
            self._known_tenants[self.collection_name].add(tenant)

    async def delete_other_versions(self, tenant: str, keep: Mapping[str, int]) -> int:
        """Delete each document's chunks of every version but the one ``keep`` names for it.

        One filter covers all the documents, so a batch's retirement is one request (or more
        when more chunks match than one pass deletes).

        Args:
            tenant: The tenant owning the documents.
            keep: The version that stays, per document id (a deletion's version: nothing stays).

        Returns:
            How many chunks were deleted.

        Raises:
            IndexWriteError: Some deletions failed.
        """
        if not keep or not await self._has_tenant(self._chunks, tenant):
            return 0
        shard = self._chunks.with_tenant(tenant)
        where = Filter.any_of(
            [
                _document_filter(tenant, doc_id) & Filter.by_property("version").not_equal(version)
                for doc_id, version in sorted(keep.items())
            ]
        )
        deleted = 0
        while True:
            result = await shard.data.delete_many(where=where)
            if result.failed:
                raise IndexWriteError(f"{result.failed} of {result.matches} deletions failed")
            deleted += result.successful
            if result.matches < _DELETE_PASS_HINT:
                return deleted

    async def search(
        self,
        *,
        tenant: str,
        text: str,
        vector: Sequence[float],
        alpha: float,
        limit: int,
        filters: MetadataFilter | None = None,
    ) -> list[SearchHit]:
        """Return up to ``limit`` of the tenant's chunks by hybrid relevance, best first.

        Scores are Weaviate's relative score fusion: each half's scores are min-max normalised
        over its own results, then weighted by ``alpha`` and summed, so they lie in [0, 1].

        Args:
            tenant: The tenant whose shard is searched; no other tenant's chunk is a candidate.
            text: The query text, for BM25.
            vector: The query vector, for the vector half.
            alpha: 0 is pure BM25, 1 pure vector.
            limit: How many candidates to return.
            filters: Metadata conditions every candidate must meet (None: none).
        """
        if not await self._has_tenant(self._chunks, tenant):
            return []
        # The tenant's own shard: nothing of another tenant is even a candidate.
        result = await self._chunks.with_tenant(tenant).query.hybrid(
            query=text,
            vector=list(vector),
            alpha=alpha,
            limit=limit,
            query_properties=_SEARCHED_PROPERTIES,
            filters=search_filter(tenant, filters),
            # Explicit, so a change of the server's default cannot silently rescale min_score.
            fusion_type=HybridFusion.RELATIVE_SCORE,
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
                    version=int(props["version"]),
                    source=str(props.get("source") or ""),
                    tags=tuple(str(tag) for tag in props.get("tags") or ()),
                )
            )
        return hits

    async def count(
        self, tenant: str | None = None, doc_id: str | None = None, version: int | None = None
    ) -> int:
        """Return how many chunk objects the index holds, optionally of one tenant or document.

        Args:
            tenant: Count only this tenant's chunks.
            doc_id: Count only this document's chunks (with ``tenant``).
            version: Count only this version's chunks (with ``tenant`` and ``doc_id``).
        """
        if tenant is None:
            tenants = await self._chunks.tenants.get()
            return sum([await self.count(name) for name in tenants])
        if not await self._has_tenant(self._chunks, tenant):
            return 0
        filters: Any = None
        if doc_id is not None:
            filters = _document_filter(tenant, doc_id)
            if version is not None:
                filters = filters & Filter.by_property("version").equal(version)
        result = await self._chunks.with_tenant(tenant).aggregate.over_all(
            filters=filters, total_count=True
        )
        return int(result.total_count or 0)
