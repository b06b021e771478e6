"""``POST /search``: text in, ranked clips out, paged with an opaque cursor."""

from __future__ import annotations

from fastapi import APIRouter

from service import responses
from service.deps import EngineDep, LinksDep, SearchPrincipal, Services
from service.errors import BadRequest, InvalidRequest
from service.pagination import MAX_RESULTS_PAGED, CursorState, query_fingerprint
from service.relevance import Calibration
from service.schemas import SearchFilters, SearchRequest, SearchResponse, SearchResult
from service.search_engine import RankedClip, SearchQuery
from service.state import MediaLinks
from videoseek.layout import DataLayout
from videoseek.store import SearchFilter

router = APIRouter(tags=["search"])


def store_filter(filters: SearchFilters | None) -> SearchFilter | None:
    """The store's filter for the request's filters; a metadata key the store rejects is a 422."""
    if filters is None:
        return None
    time_range = (filters.time_range.start_s, filters.time_range.end_s) if filters.time_range else None
    try:
        return SearchFilter(video_ids=filters.video_ids, metadata=filters.metadata, time_range=time_range)
    except ValueError as exc:
        raise InvalidRequest(f"filters: {exc}") from exc


def fingerprint(body: SearchRequest) -> str:
    filters = body.filters.model_dump(mode="json") if body.filters else None
    parts = {
        "c": body.collection,
        "q": body.query,
        "f": filters,
        "g": body.group_by,
        "m": body.min_score,
        "r": body.min_relevance,
    }
    return query_fingerprint(parts)


def to_result(
    body: SearchRequest,
    ranked: RankedClip,
    links: MediaLinks,
    has_copy: bool,
    calibration: Calibration | None,
) -> SearchResult:
    clip = ranked.clip
    metadata = clip.payload.get("metadata")
    return SearchResult(
        video_id=clip.video_id,
        clip_id=clip.id,
        clip_index=clip.clip_index,
        start_s=clip.start_s,
        end_s=clip.end_s,
        best_frame_s=ranked.best_frame_s,
        score=round(ranked.score, 6),
        relevance=round(calibration.relevance(ranked.score), 3) if calibration else None,
        source_name=clip.payload.get("source_name") or clip.payload.get("source"),
        metadata=metadata if isinstance(metadata, dict) else {},
        thumbnail_url=links.thumbnail(body.collection, clip.video_id, clip.clip_index),
        playback_url=links.playback(body.collection, clip.video_id, clip.start_s, copy=has_copy),
        file_url=links.video_file(body.collection, clip.video_id),
    )


def playback_copies(layout: DataLayout, collection: str, video_ids: set[str]) -> dict[str, bool]:
    """Which of the videos have a browser-playable copy (one stat each, a page's worth)."""
    return {video_id: layout.playback_file(collection, video_id).is_file() for video_id in video_ids}


def min_score(body: SearchRequest, calibration: Calibration | None) -> float | None:
    """The score cut-off: ``min_score``, raised to where ``min_relevance`` is for this collection version."""
    if body.min_relevance is None or calibration is None:
        return body.min_score
    at = calibration.score_at(body.min_relevance)
    return at if body.min_score is None else max(at, body.min_score)


def page_query(body: SearchRequest, state: CursorState | None, cut: float | None) -> SearchQuery:
    seen = frozenset(state.seen) if state else frozenset()
    if len(seen) >= MAX_RESULTS_PAGED:
        raise BadRequest(f"paging is limited to {MAX_RESULTS_PAGED} results: refine the query or filters")
    return SearchQuery(
        collection=body.collection,
        text=body.query,
        limit=min(body.limit, MAX_RESULTS_PAGED - len(seen)),
        flt=store_filter(body.filters),
        group_by=body.group_by,
        min_score=cut,
        seen=seen,
    )


def next_state(
    body: SearchRequest, adapter_version: str | None, state: CursorState | None, shown: list[RankedClip]
) -> CursorState:
    keys = [r.clip.video_id if body.group_by == "video" else r.clip.id for r in shown]
    return CursorState(fingerprint(body), adapter_version, [*(state.seen if state else []), *keys])


@router.post("/search", response_model=SearchResponse, responses=responses.SEARCH)
async def search(
    body: SearchRequest, principal: SearchPrincipal, engine: EngineDep, services: Services, links: LinksDep
) -> SearchResponse:
    """Rank a collection's clips against a text query (pass next_cursor back for the next page)."""
    principal.require_collection(body.collection)
    info = await engine.collection(body.collection)
    state = (
        services.cursors.decode(body.cursor, fingerprint(body), info.adapter_version) if body.cursor else None
    )
    calibration = await services.relevance.get(engine, info)
    outcome = await engine.search(page_query(body, state, min_score(body, calibration)), info)
    copies = playback_copies(services.layout, body.collection, {r.clip.video_id for r in outcome.results})
    following = next_state(body, outcome.adapter_version, state, outcome.results)
    more = outcome.has_more and len(following.seen) < MAX_RESULTS_PAGED
    return SearchResponse(
        collection=body.collection,
        query=body.query,
        adapter_version=outcome.adapter_version,
        pooling=outcome.pooling,
        results=[
            to_result(body, ranked, links, copies.get(ranked.clip.video_id, False), calibration)
            for ranked in outcome.results
        ],
        next_cursor=services.cursors.encode(following) if more else None,
        timings_ms=outcome.timings_ms,
    )
