"""``videoseek retrain``, ``versions`` and ``rollback`` on the embedded default: the API's lifecycle, by command."""

from __future__ import annotations

import json
from typing import Any

from ingest_helpers import ingest_all
from typer.testing import CliRunner

from videoseek.cli.app import app
from videoseek.collections import create_collection
from videoseek.pairs import text_pair
from videoseek.runtime.embedded import EmbeddedRuntime, embedded_context
from videoseek.settings import Settings

NAME = "films"


def _json(runner: CliRunner, *args: str) -> dict[str, Any]:
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    return dict(json.loads(out.stdout))


def test_retrain_keeps_or_installs_and_rollback_puts_the_old_version_back(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(runtime.context, NAME)
    jobs = ingest_all(runtime, NAME, [r["path"] for r in toy_videos[:2]])
    pairs = [
        text_pair(NAME, j.video_id, "caption", r["caption"]) for j, r in zip(jobs, toy_videos, strict=False)
    ]
    runtime.context.pairs.add(pairs)
    runtime.close()  # the commands open the data dir in runtimes of their own
    runner = CliRunner()

    kept = _json(runner, "retrain", "-c", NAME, "--epochs", "1")
    assert (kept["outcome"], kept["training_pairs"]["captions"]) == ("kept", 2)
    forced = _json(runner, "retrain", "-c", NAME, "--epochs", "1", "--force")
    assert forced["outcome"] == "installed" and forced["adapter_version"]
    listed = runner.invoke(app, ["versions", "-c", NAME, "--json"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["live"], r["adapter_version"], r["pooling"]) for r in rows] == [
        (True, forced["adapter_version"], "text_conditioned"),  # 2 videos: no dev pairs to choose another on
        (False, None, "text_conditioned"),
    ]
    assert forced["serving"]["pooling"] is None and "no dev pairs" in forced["serving"]["why"]

    back = _json(runner, "rollback", "-c", NAME)
    assert (back["physical"], back["new_adapter_version"]) == (rows[1]["physical"], None)
    unknown = runner.invoke(app, ["rollback", "-c", NAME, "--version", f"vs__{NAME}__9"])
    assert unknown.exit_code == 1 and "not a version" in unknown.output
    human = runner.invoke(app, ["versions", "-c", NAME])
    assert human.exit_code == 0 and human.stdout.startswith(f"* {rows[1]['physical']}"), human.output
    assert "text_conditioned" in human.stdout.splitlines()[0]
    context = embedded_context(embedded)
    assert context.store.get_collection(NAME).adapter_version is None
    context.close()
