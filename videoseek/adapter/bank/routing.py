"""Which batch rows use which pool slots, and the delta that applies at each adapter site of a forward.

A :class:`Route` is built for one forward from each row's (pool, slot), and computes the delta of one site:
rows of one pool are gathered (``index_select``) and get all their adapters in two batched matmuls
(``baddbmm``); rows that all use one adapter get plain matmuls on views of its slot; rows without an adapter
get an exact zero delta, so they equal the plain CLIP.

How the route reaches the sites. open_clip's forward takes no extra argument down to the residual blocks, so the
:class:`RoutedDelta` modules wrapped around the sites cannot be handed the route by the call. Each holds instead
an explicit reference to the :class:`Router` of its model (one per model, made when the sites are wrapped and
shared by every bank on that model), and the router holds the route of the forward that is running *in the
current thread* (a ``ContextVar`` owned by the router, set by :meth:`Router.routing` around one bank forward and
reset after it). No module-level state is consulted.

Why a context variable and not a plain attribute set under the bank's lock: the lock orders one bank's forwards,
but several banks share one model and run forwards at the same time in different threads (the API's encoder
workers each have a bank on the process's cached CLIP; in embedded mode the frame embedder has another one), and
plain forwards on the same model (``LoadedClip.encode_text`` without adapters) run alongside them. A route
stored on the shared modules would be seen by all of them; a context variable's value is only seen by the
thread that set it, so every other forward on the model, routed or plain, sees its own route or none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn

from videoseek.adapter.bank.pools import TowerPool, site_index
from videoseek.adapter.config import TOWERS, Site, Tower
from videoseek.adapter.layer import adapter_delta, batched_adapter_delta
from videoseek.adapter.model import AdapterSite, AlreadyAdapted, wrap_sites

Placement = tuple[TowerPool, int]  # the pool holding a row's adapter for this tower, and its slot there


@dataclass
class PoolRoute:
    pool: TowerPool
    slots: torch.Tensor  # one slot per routed row
    rows: torch.Tensor | None  # batch rows using this pool; None: every row, in order
    single_slot: int | None  # set when every routed row uses the same adapter


@dataclass
class Route:
    """The adapters of one forward on one tower: per pool, the rows that use it and their slots."""

    tower: Tower
    pools: list[PoolRoute]

    @classmethod
    def build(cls, tower: Tower, placements: Sequence[Placement | None], device: torch.device) -> Route:
        """The route of a batch whose row i uses ``placements[i]`` (None: no adapter, plain CLIP)."""
        groups: dict[TowerPool, tuple[list[int], list[int]]] = {}
        for row, placement in enumerate(placements):
            if placement is None:
                continue
            pool, slot = placement
            rows, slots = groups.setdefault(pool, ([], []))
            rows.append(row)
            slots.append(slot)
        routes = []
        for pool, (rows, slots) in groups.items():
            every_row = len(rows) == len(placements)
            routes.append(
                PoolRoute(
                    pool=pool,
                    slots=torch.tensor(slots, dtype=torch.long, device=device),
                    rows=None if every_row else torch.tensor(rows, dtype=torch.long, device=device),
                    single_slot=slots[0] if len(set(slots)) == 1 else None,
                )
            )
        return cls(tower=tower, pools=routes)

    def delta(self, site: int, y: torch.Tensor, batch_first: bool) -> torch.Tensor:
        x = y if batch_first else y.transpose(0, 1)
        out: torch.Tensor | None = None
        for route in self.pools:
            pool = route.pool
            rows_x = x if route.rows is None else x.index_select(0, route.rows)
            if route.single_slot is not None:
                # One adapter for all these rows: plain matmuls on views of its slot, nothing gathered.
                s = route.single_slot
                part = adapter_delta(
                    rows_x, pool.down[site, s], pool.down_b[site, s], pool.up[site, s], pool.up_b[site, s]
                )
            else:
                part = batched_adapter_delta(
                    rows_x,
                    pool.down[site].index_select(0, route.slots),
                    pool.down_b[site].index_select(0, route.slots),
                    pool.up[site].index_select(0, route.slots),
                    pool.up_b[site].index_select(0, route.slots),
                )
            if route.rows is None:
                out = part
            else:
                out = torch.zeros_like(x) if out is None else out
                out.index_copy_(0, route.rows, part)
        assert out is not None
        return out if batch_first else out.transpose(0, 1)


class Router:
    """The route of the forward running on one model in the current thread, if any (see the module docstring).

    The context variable is created per router, not at module level as the ``contextvars`` docs advise, because
    the route belongs to one model; a thread's context keeps no reference to it once :meth:`routing` has
    reset it, and there is one router per routed model, which lives as long as the model.
    """

    def __init__(self) -> None:
        self._route: ContextVar[Route | None] = ContextVar(f"adapter_route_{id(self):x}", default=None)

    def __reduce__(self) -> tuple[type[Router], tuple[()]]:
        # A copied (or pickled) model gets a router of its own, with no route set; a ContextVar cannot be copied.
        return Router, ()

    @contextmanager
    def routing(self, route: Route) -> Iterator[None]:
        """Apply ``route`` to this model's forwards in the current thread until the block ends."""
        token = self._route.set(route)
        try:
            yield
        finally:
            self._route.reset(token)

    def active(self, tower: Tower) -> Route | None:
        """The current thread's route if it routes ``tower`` to at least one adapter."""
        route = self._route.get()
        if route is None or route.tower != tower or not route.pools:
            return None
        return route


class RoutedDelta(nn.Module):
    """The delta of one site in bank mode: whatever its router's active route says, or nothing."""

    def __init__(self, router: Router, tower: Tower, site: int, batch_first: bool) -> None:
        super().__init__()
        self.router = router
        self.tower, self.site, self.batch_first = tower, site, batch_first

    def forward(self, y: torch.Tensor) -> torch.Tensor | None:
        route = self.router.active(self.tower)
        return None if route is None else route.delta(self.site, y, self.batch_first)


def install_routing(model: nn.Module) -> Router:
    """Wrap every site of ``model`` in a :class:`RoutedDelta`, or find the router a bank already installed."""
    sites = [m for m in model.modules() if isinstance(m, AdapterSite)]
    routed = [s.delta for s in sites if isinstance(s.delta, RoutedDelta)]
    if sites and len(routed) == len(sites):
        return routed[0].router  # another bank routed this model: routes are per thread, so share its router
    if sites:
        raise AlreadyAdapted("this CLIP has trainable adapters injected; an AdapterBank needs a plain one")
    router = Router()

    def make_delta(tower: Tower, layer: int, site: Site, batch_first: bool) -> RoutedDelta:
        return RoutedDelta(router, tower, site_index(layer, site), batch_first)

    wrap_sites(model, TOWERS, make_delta)
    return router
