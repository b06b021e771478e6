"""Clip store on a Qdrant server through qdrant-client (distributed mode).

Collections are real Qdrant aliases over physical collections ``vs__<name>__<n>``; each physical collection
carries its VersionMeta in Qdrant's collection metadata, so the server alone knows everything (several API
and worker processes share it). A version swap is one atomic alias request. Tests run this class against
qdrant-client's local mode (:meth:`ServerClipStore.local`), which is not thread-safe and ignores payload
indexes, so there the store serialises calls and skips index creation.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from videoseek.store.base import (
    BASE_PAYLOAD_INDEXES,
    MAX_METADATA_INDEXES,
    POOLED_INT8_QUANTILE,
    POOLED_RESCORE_OVERSAMPLING,
    SPAN_PAYLOAD_KEYS,
    VECTOR_FRAMES,
    VECTOR_POOLED,
    AnyCondition,
    ClipPoint,
    ClipSpan,
    CollectionExists,
    CollectionInfo,
    CollectionNotFound,
    CollectionUnreadable,
    Condition,
    RangeCondition,
    ScoredClip,
    SearchFilter,
    StoreError,
    StoreUnavailable,
    VersionInfo,
    VersionMeta,
    check_points,
    check_query_vector,
    check_store_name,
    check_version_of,
    clip_span,
    exclusion_conditions,
    filter_conditions,
    frames_maxsim,
    frames_of,
    new_meta,
    next_meta,
    parse_physical,
    physical_name,
    scored_clip,
    served_order,
    valid_point_ids,
    versions_to_drop,
)

META_KEY = "videoseek"  # our entry in Qdrant's collection metadata
_SCHEMA = {
    "keyword": qm.PayloadSchemaType.KEYWORD,
    "integer": qm.PayloadSchemaType.INTEGER,
    "float": qm.PayloadSchemaType.FLOAT,
    "bool": qm.PayloadSchemaType.BOOL,
}
_UNAVAILABLE_STATUS = frozenset({429, 502, 503, 504})


def _map_error(what: str, exc: Exception) -> StoreError:
    if isinstance(exc, ResponseHandlingException | httpx.TransportError | TimeoutError | ConnectionError):
        return StoreUnavailable(f"Qdrant server unreachable during {what}: {exc}; is it running?")
    if isinstance(exc, UnexpectedResponse):
        detail = exc.content.decode("utf-8", "replace")[:300]
        if exc.status_code == 404:
            return CollectionNotFound(f"{what}: not found ({detail})")
        if exc.status_code == 409:
            return CollectionExists(f"{what}: already exists ({detail})")
        if exc.status_code in _UNAVAILABLE_STATUS:
            return StoreUnavailable(f"Qdrant server busy during {what}: HTTP {exc.status_code} {detail}")
        return StoreError(f"Qdrant server rejected {what}: HTTP {exc.status_code} {detail}")
    message = str(exc)  # local mode reports everything as ValueError
    if "not found" in message:
        return CollectionNotFound(f"{what}: {message}")
    if "already exists" in message:
        return CollectionExists(f"{what}: {message}")
    return StoreError(f"{what} failed: {message}")


_RESCORED = qm.SearchParams(
    quantization=qm.QuantizationSearchParams(rescore=True, oversampling=POOLED_RESCORE_OVERSAMPLING)
)


def vectors_config(dim: int) -> dict[str, qm.VectorParams]:
    """The Edge store's vectors (:mod:`videoseek.store.edge_layout`): pooled with HNSW over an int8 copy kept in
    RAM and its float originals on disk; frames as a float16 MAX_SIM multivector on disk, no graph. Unlike the
    Edge store's versions, a collection here keeps both: the server searches a shard's segments in parallel,
    and a second collection per version would double the aliases and the cluster's shards (docs/scale.md).

    A Qdrant server applies all of it; qdrant-client's local mode records it (``get_collection`` reports it
    back) but keeps every vector as float32 in memory. Collections created before this layout keep theirs.
    """
    return {
        VECTOR_POOLED: qm.VectorParams(
            size=dim,
            distance=qm.Distance.COSINE,
            on_disk=True,  # the originals only rescore the int8 walk's candidates
            quantization_config=qm.ScalarQuantization(
                # always_ram, not memory=PINNED: the pinned server (v1.16) predates memory tiers
                scalar=qm.ScalarQuantizationConfig(
                    type=qm.ScalarType.INT8, quantile=POOLED_INT8_QUANTILE, always_ram=True
                )
            ),
        ),
        VECTOR_FRAMES: qm.VectorParams(
            size=dim,
            distance=qm.Distance.DOT,  # Cosine would normalise on write; get_frames returns what was stored
            datatype=qm.Datatype.FLOAT16,
            multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
            hnsw_config=qm.HnswConfigDiff(m=0),  # read back for re-ranking only, never searched
            on_disk=True,
        ),
    }


def legacy_vectors_config(dim: int) -> dict[str, qm.VectorParams]:
    """The layout collections created before issue 17 have (float32 frames, pooled originals in RAM).

    They keep it and keep working: the store never changes a collection's vectors config. Kept here so tests can
    make one.
    """
    return {
        VECTOR_POOLED: qm.VectorParams(
            size=dim,
            distance=qm.Distance.COSINE,
            quantization_config=qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(
                    type=qm.ScalarType.INT8, quantile=POOLED_INT8_QUANTILE, always_ram=True
                )
            ),
        ),
        VECTOR_FRAMES: qm.VectorParams(
            size=dim,
            distance=qm.Distance.DOT,
            multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
            hnsw_config=qm.HnswConfigDiff(m=0),
            on_disk=True,
        ),
    }


def params_frames_maxsim(vectors: object) -> bool:
    """Whether a collection's vectors config (``config.params.vectors``) lets ``frames`` re-score by MaxSim."""
    frames = vectors.get(VECTOR_FRAMES) if isinstance(vectors, dict) else None
    if not isinstance(frames, qm.VectorParams) or frames.multivector_config is None:
        return False
    return frames_maxsim(frames.multivector_config.comparator, frames.distance)


def _condition(cond: Condition) -> qm.FieldCondition:
    if isinstance(cond, AnyCondition):
        return qm.FieldCondition(key=cond.key, match=qm.MatchAny(any=list(cond.values)))
    if isinstance(cond, RangeCondition):
        return qm.FieldCondition(key=cond.key, range=qm.Range(gte=cond.gte, lte=cond.lte))
    return qm.FieldCondition(key=cond.key, match=qm.MatchValue(value=cond.value))


def _filter(flt: SearchFilter | None, exclude_ids: Collection[str] = ()) -> qm.Filter | None:
    must: list[qm.Condition] = [_condition(c) for c in filter_conditions(flt)]
    excluded = valid_point_ids(exclude_ids)
    must_not: list[qm.Condition] = [qm.HasIdCondition(has_id=list(excluded))] if excluded else []
    must_not += [_condition(c) for c in exclusion_conditions(flt)]
    if not must and not must_not:
        return None
    return qm.Filter(must=must or None, must_not=must_not or None)


def _video_filter(video_id: str) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key="video_id", match=qm.MatchValue(value=video_id))])


class ServerClipStore:
    """:class:`~videoseek.store.base.ClipStore` on a Qdrant server (or qdrant-client local mode)."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        local: bool = False,
        batch_size: int = 128,
        layout: Mapping[str, int | bool] | None = None,
    ) -> None:
        """``layout``: extra ``create_collection`` arguments for every collection this store creates (a
        cluster's ``shard_number``, ``replication_factor``, ``write_consistency_factor``, ``on_disk_payload``;
        ``QdrantSettings.collection_layout``)."""
        self._client = client
        self._layout = {"on_disk_payload": True, **(layout or {})}
        self._local = local
        self._batch_size = batch_size
        self._call_lock = threading.RLock() if local else None
        self._catalog_lock = threading.Lock()  # catalog changes from this process, one at a time
        self._cache_lock = threading.Lock()
        self._metas: dict[str, VersionMeta] = {}  # physical -> meta; a version's meta never changes
        self._indexed: dict[str, set[str]] = {}  # physical -> payload fields known to be indexed
        # physical -> whether its frames can re-score by MaxSim (a version's vectors config never changes)
        self._maxsim: dict[str, bool] = {}
        self._closed = False

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str | None = None,
        timeout_s: int = 10,
        layout: Mapping[str, int | bool] | None = None,
    ) -> ServerClipStore:
        """A store on the server at ``url``. Connects lazily: an unreachable server fails the first call."""
        # The client checks the server's version in the background and warns if major.minor are more than one
        # apart (docker-compose.yml runs the server release that matches the pinned client).
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s)
        return cls(client, layout=layout)

    @classmethod
    def local(cls, path: Path | None = None) -> ServerClipStore:
        """qdrant-client local mode (tests, benchmarks): in memory, or persisted under ``path``."""
        if path is None:
            client = QdrantClient(location=":memory:", force_disable_check_same_thread=True)
        else:
            client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        return cls(client, local=True)

    # -- lifecycle ----------------------------------------------------------------------------------

    def create_collection(
        self, name: str, dim: int, model: str, adapter_version: str | None = None
    ) -> CollectionInfo:
        check_store_name(name)
        meta = new_meta(name, dim, model, adapter_version)
        with self._catalog_lock:
            if self._aliases().get(name) is not None:
                raise CollectionExists(f"collection {name!r} already exists; delete it first or pick a name")
            physical = self._next_physical(name)
            self._create_physical(physical, meta)
            try:
                self._alias_ops(
                    f"creating alias {name!r}",
                    [
                        qm.CreateAliasOperation(
                            create_alias=qm.CreateAlias(collection_name=physical, alias_name=name)
                        )
                    ],
                )
            except StoreError:
                self._delete_physical(physical)
                raise
        return meta.info(physical, points=0, videos=0, frames_maxsim=self._frames_maxsim(physical))

    def get_collection(self, name: str) -> CollectionInfo:
        physical, meta = self._resolve(name)
        return self._info(physical, meta)

    def list_collections(self) -> list[CollectionInfo]:
        """The collections that can be read; :meth:`unreadable_collections` names the others."""
        infos = []
        for physical in self._own_aliases().values():
            try:
                infos.append(self._info(physical, self._meta(physical)))
            except CollectionUnreadable:
                continue
        return infos

    def unreadable_collections(self) -> dict[str, str]:
        problems = {}
        for name, physical in self._own_aliases().items():
            try:
                self._meta(physical)
            except CollectionUnreadable as exc:
                problems[name] = str(exc)
        return problems

    def delete_collection(self, name: str) -> None:
        with self._catalog_lock:
            if self._aliases().get(name) is None:  # not _resolve: an unreadable collection can be deleted
                raise CollectionNotFound(f"collection {name!r} does not exist")
            self._alias_ops(
                f"deleting alias {name!r}",
                [qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=name))],
            )
            for physical in self._versions(name):
                self._delete_physical(physical)

    def new_version(
        self, name: str, adapter_version: str | None, *, model: str | None = None, dim: int | None = None
    ) -> str:
        with self._catalog_lock:
            _, current = self._resolve(name)
            physical = self._next_physical(name)
            self._create_physical(physical, next_meta(current, adapter_version, model, dim))
            return physical

    def activate_version(self, name: str, physical: str, *, keep: int = 0) -> None:
        with self._catalog_lock:
            meta = self._check_version(name, physical).activated()
            old, old_meta = self._resolve(name)
            if old == physical:
                return
            self._write_meta(physical, meta)  # before the alias: a crash leaves it unused
            if old_meta.activated_at is None:  # written before activated_at existed: it served all the same
                self._write_meta(old, old_meta.activated(old_meta.version_created_at))
            self._alias_ops(  # one request: Qdrant applies it atomically
                f"switching {name!r} to {physical!r}",
                [
                    qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=name)),
                    qm.CreateAliasOperation(
                        create_alias=qm.CreateAlias(collection_name=physical, alias_name=name)
                    ),
                ],
            )
            for stale in versions_to_drop(self._readable_metas(name), old, physical, keep):
                self._delete_physical(stale)

    def list_versions(self, name: str) -> list[VersionInfo]:
        with self._catalog_lock:
            live, _ = self._resolve(name)
            listed = {
                p: m for p, m in self._readable_metas(name).items() if p == live or m.activated_at is not None
            }
        infos = [
            VersionInfo(
                physical=p,
                adapter_version=m.adapter_version,
                model=m.model,
                live=p == live,
                created_at=m.version_created_at,
                activated_at=m.served_at,
                points=self._count(p, None),
            )
            for p, m in listed.items()
        ]
        return served_order(infos)

    def _readable_metas(self, name: str) -> dict[str, VersionMeta]:
        metas = {}
        for physical in self._versions(name):
            try:
                metas[physical] = self._meta(physical)
            except StoreError:  # not ours, or unreadable: neither listed nor dropped
                continue
        return metas

    def _write_meta(self, physical: str, meta: VersionMeta) -> None:
        with self._call(f"updating {physical!r}"):
            self._client.update_collection(physical, metadata={META_KEY: meta.to_json()})
        with self._cache_lock:
            self._metas[physical] = meta

    def drop_version(self, name: str, physical: str) -> None:
        with self._catalog_lock:
            check_version_of(name, physical)
            live, _ = self._resolve(name)
            if live == physical:
                raise StoreError(
                    f"{physical!r} is the live version of {name!r}; delete the collection instead"
                )
            if physical in self._versions(name):
                self._delete_physical(physical)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._call("closing the client"):
                self._client.close()

    # -- data ---------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[ClipPoint], physical: str | None = None) -> None:
        if physical is None:
            target = name  # by alias: a write racing a version swap lands in whichever version is live
            physical, meta = self._resolve(name)
        else:
            target, meta = physical, self._check_version(name, physical)
        check_points(points, meta.dim, f"collection {name!r}")
        if not points:
            return
        self._ensure_metadata_indexes(physical, points)
        for start in range(0, len(points), self._batch_size):
            batch = [
                qm.PointStruct(
                    id=p.id,
                    vector={VECTOR_POOLED: p.pooled.tolist(), VECTOR_FRAMES: p.frames.tolist()},
                    payload=p.stored_payload(),
                )
                for p in points[start : start + self._batch_size]
            ]
            with self._call(f"upsert into {target!r}"):
                self._client.upsert(target, points=batch, wait=True)

    def search(
        self,
        name: str,
        vector: np.ndarray,
        limit: int,
        flt: SearchFilter | None = None,
        with_frames: bool = False,
        exclude_ids: Collection[str] = (),
        prefetch: int | None = None,
    ) -> list[ScoredClip]:
        physical, meta = self._resolve(name)
        query = check_query_vector(vector, meta.dim)
        if limit <= 0 or (flt is not None and flt.matches_nothing):
            return []
        params = None if self._local else _RESCORED  # local mode is exact search anyway
        ranking: dict[str, Any]
        if prefetch is not None and self._frames_maxsim(physical):
            # The filter goes on the prefetch: the outer query only re-scores what the prefetch found.
            # A swap between resolving and querying leaves `physical`'s answer for the new version; every
            # version gets the same layout from this code, so it holds.
            pooled = qm.Prefetch(
                query=query.tolist(),
                using=VECTOR_POOLED,
                filter=_filter(flt, exclude_ids),
                params=params,
                limit=max(prefetch, limit),
            )
            # a one-vector multivector: MaxSim = max_j <query, f_j>
            ranking = {"prefetch": pooled, "query": [query.tolist()], "using": VECTOR_FRAMES}
        else:
            ranking = {
                "query": query.tolist(),
                "using": VECTOR_POOLED,
                "query_filter": _filter(flt, exclude_ids),
                "search_params": params,
            }
        with self._call(f"search in {name!r}"):  # by alias: a concurrent swap cannot make it miss
            hits = self._client.query_points(
                name,
                limit=limit,
                with_payload=True,
                with_vectors=[VECTOR_FRAMES] if with_frames else False,
                **ranking,
            ).points
        return [
            scored_clip(h.id, h.score, h.payload, frames_of(h.vector) if with_frames else None) for h in hits
        ]

    def get_frames(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        self._resolve(name)
        wanted = valid_point_ids(ids)
        if not wanted:
            return {}
        with self._call(f"retrieve from {name!r}"):
            records = self._client.retrieve(
                name, ids=wanted, with_payload=False, with_vectors=[VECTOR_FRAMES]
            )
        found = {str(r.id): frames_of(r.vector) for r in records}
        return {pid: frames for pid, frames in found.items() if frames is not None}

    def clip_spans(self, name: str, ids: Sequence[str]) -> dict[str, ClipSpan]:
        self._resolve(name)
        wanted = valid_point_ids(ids)
        if not wanted:
            return {}
        with self._call(f"retrieve from {name!r}"):
            records = self._client.retrieve(
                name, ids=wanted, with_payload=SPAN_PAYLOAD_KEYS, with_vectors=False
            )
        return {str(r.id): clip_span(r.id, r.payload) for r in records}

    def delete_video(self, name: str, video_id: str) -> int:
        removed = self.count(name, video_id)
        if removed:
            with self._call(f"delete video from {name!r}"):
                self._client.delete(
                    name, points_selector=qm.FilterSelector(filter=_video_filter(video_id)), wait=True
                )
        return removed

    def has_video(self, name: str, video_id: str) -> bool:
        return self.count(name, video_id) > 0

    def count(self, name: str, video_id: str | None = None) -> int:
        self._resolve(name)
        return self._count(name, video_id)

    def list_videos(self, name: str, physical: str | None = None) -> list[str]:
        if physical is None:
            self._resolve(name)
            return self._videos(name)
        self._check_version(name, physical)
        return self._videos(physical)

    # -- internals ----------------------------------------------------------------------------------

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        if self._closed and what != "closing the client":
            raise StoreError("the clip store is closed; open a new one")
        guard: AbstractContextManager[Any] = self._call_lock if self._call_lock is not None else nullcontext()
        with guard:
            try:
                yield
            except StoreError:
                raise
            except (
                ResponseHandlingException,
                UnexpectedResponse,
                httpx.HTTPError,
                OSError,
                ValueError,
            ) as exc:
                raise _map_error(what, exc) from exc

    def _aliases(self) -> dict[str, str]:
        with self._call("listing aliases"):
            return {a.alias_name: a.collection_name for a in self._client.get_aliases().aliases}

    def _own_aliases(self) -> dict[str, str]:
        """Alias -> physical for the collections videoseek made (other aliases are ignored), by name."""
        return {
            name: physical
            for name, physical in sorted(self._aliases().items())
            if (parsed := parse_physical(physical)) is not None and parsed[0] == name
        }

    def _resolve(self, name: str) -> tuple[str, VersionMeta]:
        physical = self._aliases().get(name)
        if physical is None:
            raise CollectionNotFound(f"collection {name!r} does not exist; create it first")
        return physical, self._meta(physical)

    def _meta(self, physical: str) -> VersionMeta:
        with self._cache_lock:
            cached = self._metas.get(physical)
        if cached is not None:
            return cached
        with self._call(f"reading {physical!r}"):
            info = self._client.get_collection(physical)
        raw = (info.config.metadata or {}).get(META_KEY)
        if not isinstance(raw, dict):
            raise StoreError(
                f"collection {physical!r} has no videoseek metadata; it was not made by videoseek"
            )
        try:
            meta = VersionMeta.from_json(raw)
        except StoreError as exc:
            parsed = parse_physical(physical)
            name = parsed[0] if parsed else physical
            raise CollectionUnreadable(
                f"collection {name!r} cannot be opened: {exc}. The other collections are not affected; "
                f"restore Qdrant collection {physical!r} from a snapshot, or delete the collection "
                f"(DELETE /collections/{name}) and ingest its videos again"
            ) from exc
        with self._cache_lock:
            self._metas[physical] = meta
            self._indexed.setdefault(physical, set(info.payload_schema or {}))
            self._maxsim.setdefault(physical, params_frames_maxsim(info.config.params.vectors))
        return meta

    def _frames_maxsim(self, physical: str) -> bool:
        with self._cache_lock:
            known = self._maxsim.get(physical)
        if known is not None:
            return known
        with self._call(f"reading {physical!r}"):
            vectors = self._client.get_collection(physical).config.params.vectors
        with self._cache_lock:
            return self._maxsim.setdefault(physical, params_frames_maxsim(vectors))

    def _check_version(self, name: str, physical: str) -> VersionMeta:
        check_version_of(name, physical)
        return self._meta(physical)

    def _versions(self, name: str) -> list[str]:
        with self._call("listing collections"):
            names = [c.name for c in self._client.get_collections().collections]
        return sorted(n for n in names if (parsed := parse_physical(n)) is not None and parsed[0] == name)

    def _next_physical(self, name: str) -> str:
        used = [parse_physical(p)[1] for p in self._versions(name)]  # type: ignore[index]
        return physical_name(name, max(used, default=0) + 1)

    def _create_physical(self, physical: str, meta: VersionMeta) -> None:
        with self._call(f"creating {physical!r}"):
            self._client.create_collection(
                physical,
                vectors_config=vectors_config(meta.dim),
                metadata={META_KEY: meta.to_json()},
                **self._layout,  # type: ignore[arg-type]  # checked by QdrantSettings
            )
        with self._cache_lock:
            self._metas[physical] = meta
            self._indexed[physical] = set()
            self._maxsim[physical] = params_frames_maxsim(vectors_config(meta.dim))
        self._create_indexes(physical, dict(BASE_PAYLOAD_INDEXES))

    def _delete_physical(self, physical: str) -> None:
        with self._call(f"deleting {physical!r}"):
            self._client.delete_collection(physical)
        with self._cache_lock:
            self._metas.pop(physical, None)
            self._indexed.pop(physical, None)
            self._maxsim.pop(physical, None)

    def _alias_ops(self, what: str, ops: list[qm.AliasOperations]) -> None:
        with self._call(what):
            self._client.update_collection_aliases(change_aliases_operations=ops)

    def _ensure_metadata_indexes(self, physical: str, points: Sequence[ClipPoint]) -> None:
        wanted: dict[str, str] = {}
        for point in points:
            for path, kind in point.metadata_indexes().items():
                wanted.setdefault(path, kind)
        with self._cache_lock:
            indexed = self._indexed.setdefault(physical, set())
            budget = MAX_METADATA_INDEXES - len(indexed - set(BASE_PAYLOAD_INDEXES))
            missing = {p: k for p, k in wanted.items() if p not in indexed}
        self._create_indexes(physical, dict(list(missing.items())[: max(budget, 0)]))

    def _create_indexes(self, physical: str, fields: dict[str, str]) -> None:
        if not self._local:  # local mode ignores payload indexes (and warns about each one)
            for path, kind in fields.items():
                with self._call(f"indexing {path} in {physical!r}"):
                    self._client.create_payload_index(physical, path, field_schema=_SCHEMA[kind], wait=True)
        with self._cache_lock:
            self._indexed.setdefault(physical, set()).update(fields)

    def _count(self, target: str, video_id: str | None) -> int:
        flt = None if video_id is None else _video_filter(video_id)
        with self._call(f"count in {target!r}"):
            return int(self._client.count(target, count_filter=flt, exact=True).count)

    def _videos(self, target: str) -> list[str]:
        points = self._count(target, None)
        if points == 0:
            return []
        with self._call(f"listing videos of {target!r}"):
            hits = self._client.facet(target, key="video_id", limit=points, exact=True).hits
        return sorted(str(h.value) for h in hits if h.count > 0)

    def _info(self, physical: str, meta: VersionMeta) -> CollectionInfo:
        return meta.info(
            physical,
            points=self._count(physical, None),
            videos=len(self._videos(physical)),
            frames_maxsim=self._frames_maxsim(physical),
        )
