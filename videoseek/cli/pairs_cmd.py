"""``videoseek pairs list``: a collection's training pairs (captions, feedback, subtitles), read from its pair store.

Reading needs no hold on the data directory: the embedded pair store is an SQLite file any number of readers
share with the running server (in distributed mode it is Redis). Pairs are added with ``videoseek ingest
--captions``, an upload's ``captions`` and ``subtitles``, or the API.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from videoseek.cli.common import cli_settings, fail
from videoseek.layout import InvalidName, check_collection_name
from videoseek.pairs import PAIR_KINDS, PairKind, TrainingPair, check_kind, iter_pairs

pairs_app = typer.Typer(help="A collection's training pairs.", no_args_is_help=True)


def _span(pair: TrainingPair) -> str:
    start = "start" if pair.start_s is None else f"{pair.start_s:.2f}"
    end = "end" if pair.end_s is None else f"{pair.end_s:.2f}"
    return f"{start}-{end}"


@pairs_app.command("list")
def list_pairs(
    collection: Annotated[str, typer.Option("--collection", "-c", help="The collection.")],
    kind: Annotated[
        list[str] | None, typer.Option(help=f"Only these kinds (repeatable): {', '.join(PAIR_KINDS)}.")
    ] = None,
    video: Annotated[str | None, typer.Option(help="Only the pairs of this video id.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Print the collection's training pairs, oldest first, then how many of each kind it has."""
    try:
        check_collection_name(collection)
        kinds: list[PairKind] | None = [check_kind(k) for k in kind] if kind else None
    except (InvalidName, ValueError) as exc:
        raise fail(str(exc)) from exc
    from videoseek.cli.runtime import open_runtime

    runtime = open_runtime(cli_settings())
    try:
        store = runtime.context.pairs
        for pair in iter_pairs(store, collection, kinds=kinds, video_id=video):
            if json_output:
                typer.echo(json.dumps(pair.to_dict()))
            else:
                typer.echo(f"{pair.kind:<17} {pair.video_id[:12]}  {_span(pair):<15} {pair.text}")
        counts = store.counts(collection)
    except Exception as exc:  # Redis down, an unreadable file: one line, not a traceback
        raise fail(f"{type(exc).__name__}: {exc}") from exc
    finally:
        runtime.close()
    if not json_output:
        typer.echo(", ".join(f"{n} {k}" for k, n in counts.items()))


def register(app: typer.Typer) -> None:
    app.add_typer(pairs_app, name="pairs")
