"""Which HTTP methods a path supports: the ``Allow`` header of a 405 and the answer to ``OPTIONS``.

Starlette's router answers a method no route of a path takes with the ``Allow`` of the *first* route whose
path matched, so ``PUT /collections/x`` said ``Allow: GET`` although ``DELETE`` works too, and ``OPTIONS`` got
a 405. Here every route of the app is asked, so the list is the path's, whatever route comes first.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# Methods a route may take (OPTIONS is answered for every path that exists, so it is not asked about).
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
# StaticFiles serves these and refuses the rest with a 405 of its own.
_STATIC_METHODS = frozenset({"GET", "HEAD"})


def _takes(route: BaseRoute, probe: Scope) -> bool:
    if isinstance(route, Mount) and isinstance(route.app, StaticFiles):  # a mount matches every method
        return probe["method"] in _STATIC_METHODS and route.matches(probe)[0] is not Match.NONE
    return route.matches(probe)[0] is Match.FULL


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """The methods some route takes on the request's path, plus OPTIONS; empty if no route has the path."""
    routes = list(routes)
    # Routing may have rewritten the scope (a mount moves root_path): probe fresh ones on the original path.
    # Asking each route per method works for routers included in routers too, whatever their internals.
    base: Scope = {
        "type": "http",
        "path": scope["path"],
        "root_path": scope.get("app_root_path", scope.get("root_path", "")),
        "path_params": {},
    }
    methods = [m for m in _METHODS if any(_takes(route, {**base, "method": m}) for route in routes)]
    return sorted([*methods, "OPTIONS"]) if methods else []
