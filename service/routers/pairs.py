"""Training pairs of a collection: captions and subtitles, search feedback; add, list (paged), delete.

Captions and every listing or deletion need the ``ingest`` scope (they are the collection's curated data, and
feedback holds what users searched for); feedback needs only ``search``: the user who ran a search says
which result was right. Every call touches the pair store (Redis in distributed mode): it runs on the Redis
lane, so a hung Redis never holds up searches.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service import responses
from service.deps import IngestPrincipal, SearchPrincipal, Services
from service.errors import NotFound
from service.schemas import (
    AddCaptionsRequest,
    CollectionNamePath,
    Deleted,
    FeedbackRequest,
    FeedbackStored,
    PairCursorQuery,
    PairIdPath,
    PairList,
    PairOut,
    PairsAdded,
    PairVideoQuery,
)
from service.state import AppServices
from videoseek import pair_intake
from videoseek.pairs import FEEDBACK_KINDS, MAX_PAGE, TEXT_KINDS, PairKind, TrainingPair

router = APIRouter(tags=["training pairs"])

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many pairs, oldest first.")]


def pair_out(pair: TrainingPair) -> PairOut:
    return PairOut.model_validate(pair.to_dict())


def _listing(
    services: AppServices,
    name: str,
    kinds: Collection[PairKind],
    video_id: str | None,
    limit: int,
    cursor: str | None,
) -> PairList:
    """One page of the collection's pairs of ``kinds`` (404 for an unknown collection), with the counts."""
    services.require_store().get_collection(name)
    pairs = services.context.pairs
    page = pairs.list(name, kinds=kinds, video_id=video_id, after=int(cursor or 0), limit=limit)
    return PairList(
        pairs=[pair_out(p) for p in page.pairs],
        next_cursor=None if page.next_after is None else str(page.next_after),
        counts={str(kind): n for kind, n in pairs.counts(name).items()},
    )


def _delete(services: AppServices, name: str, pair_id: str, kinds: Collection[PairKind]) -> bool:
    """Remove the pair if it is one of ``kinds`` in the collection (404 for an unknown collection)."""
    services.require_store().get_collection(name)
    pair = services.context.pairs.get(name, pair_id)
    if pair is None or pair.kind not in kinds:
        return False
    return services.context.pairs.delete(name, pair_id) is not None


@router.post(
    "/collections/{name}/captions",
    status_code=201,
    response_model=PairsAdded,
    responses=responses.ADD_CAPTIONS,
)
async def add_captions(
    name: CollectionNamePath, body: AddCaptionsRequest, principal: IngestPrincipal, services: Services
) -> PairsAdded:
    """Add captions for spans of the collection's videos, all or none: training pairs for retraining."""
    principal.require_collection(name)
    services.require_store()
    captions = [pair_intake.CaptionIn(c.video_id, c.text, c.start_s, c.end_s) for c in body.captions]
    result = await services.redis_lane.run(pair_intake.add_captions, services.context, name, captions)
    ids = [p.id for p in result.pairs]
    return PairsAdded(added=result.added, already_stored=len(set(ids)) - result.added, ids=ids)


@router.get("/collections/{name}/captions", response_model=PairList, responses=responses.ON_COLLECTION)
async def list_captions(
    name: CollectionNamePath,
    principal: IngestPrincipal,
    services: Services,
    kind: Annotated[Literal["caption", "subtitle"] | None, Query(description="Only this kind.")] = None,
    video_id: PairVideoQuery = None,
    limit: PageLimit = 100,
    cursor: PairCursorQuery = None,
) -> PairList:
    """The collection's captions and subtitle cues, oldest first (pass next_cursor back for the next page)."""
    principal.require_collection(name)
    kinds = TEXT_KINDS if kind is None else (kind,)
    return await services.redis_lane.run(_listing, services, name, kinds, video_id, limit, cursor)


@router.delete("/collections/{name}/captions/{pair_id}", response_model=Deleted, responses=responses.ON_PAIR)
async def delete_caption(
    name: CollectionNamePath, pair_id: PairIdPath, principal: IngestPrincipal, services: Services
) -> Deleted:
    """Remove one caption or subtitle cue from the collection's training pairs."""
    principal.require_collection(name)
    if not await services.redis_lane.run(_delete, services, name, pair_id, TEXT_KINDS):
        raise NotFound(f"collection {name!r} has no caption {pair_id}")
    return Deleted(deleted=pair_id)


@router.post(
    "/collections/{name}/feedback",
    status_code=201,
    response_model=FeedbackStored,
    responses=responses.FEEDBACK,
)
async def add_feedback(
    name: CollectionNamePath, body: FeedbackRequest, principal: SearchPrincipal, services: Services
) -> FeedbackStored:
    """Say whether a search result was the right clip for the query (a positive pair) or not (a hard negative)."""
    principal.require_collection(name)
    services.require_store()
    pair, created = await services.redis_lane.run(
        pair_intake.add_feedback, services.context, name, body.query, body.clip_id, relevant=body.relevant
    )
    return FeedbackStored(**pair_out(pair).model_dump(), replaced=not created)


@router.get("/collections/{name}/feedback", response_model=PairList, responses=responses.ON_COLLECTION)
async def list_feedback(
    name: CollectionNamePath,
    principal: IngestPrincipal,
    services: Services,
    kind: Annotated[
        Literal["feedback_positive", "feedback_negative"] | None, Query(description="Only this kind.")
    ] = None,
    video_id: PairVideoQuery = None,
    limit: PageLimit = 100,
    cursor: PairCursorQuery = None,
) -> PairList:
    """The search feedback given on the collection, oldest first (pass next_cursor back for the next page)."""
    principal.require_collection(name)
    kinds = FEEDBACK_KINDS if kind is None else (kind,)
    return await services.redis_lane.run(_listing, services, name, kinds, video_id, limit, cursor)


@router.delete("/collections/{name}/feedback/{pair_id}", response_model=Deleted, responses=responses.ON_PAIR)
async def delete_feedback(
    name: CollectionNamePath, pair_id: PairIdPath, principal: IngestPrincipal, services: Services
) -> Deleted:
    """Remove one feedback pair from the collection's training pairs."""
    principal.require_collection(name)
    if not await services.redis_lane.run(_delete, services, name, pair_id, FEEDBACK_KINDS):
        raise NotFound(f"collection {name!r} has no feedback {pair_id}")
    return Deleted(deleted=pair_id)
