"""``videoseek train | eval | compare``: JSON on stdout, files on disk, one clear line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import write_manifest
from typer.testing import CliRunner

from videoseek.cli.app import app
from videoseek.model_spec import ModelSpec

runner = CliRunner()
FAST = [
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--lr",
    "1e-3",
    "--frames",
    "4",
    "--shared-dim",
    "8",
    "--device",
    "cpu",
]


def _run(*args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_then_eval_with_the_adapter_reproduces_the_runs_metrics(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    data = str(toy_b_manifest)
    out = tmp_path / "run"
    trained = _run(
        "train", "--data", data, "--eval-data", data, "--model", str(tiny_spec), "--out", str(out), *FAST
    )
    assert trained["adapter_version"] and Path(trained["adapter_dir"]) == out / "adapter"
    assert {p.name for p in out.iterdir()} >= {"adapter", "report.json", "training.png", "checkpoint.pt"}
    evaluated = _run(
        "eval",
        "--data",
        data,
        "--model",
        str(tiny_spec),
        "--adapter",
        str(out / "adapter"),
        "--frames",
        "4",
        "--device",
        "cpu",
    )
    assert evaluated["adapter"]["version"] == trained["adapter_version"]
    assert evaluated["metrics"] == trained["metrics"]


def test_compare_writes_the_table_for_the_chosen_methods(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    data = str(toy_b_manifest)
    out = tmp_path / "cmp"
    printed = _run(
        "compare", "--data", data, "--eval-data", data, "--model", str(tiny_spec), "--out", str(out),
        "--methods", "zero-shot,cma", "--method-lr", "cma=2e-3", *FAST,
    )  # fmt: skip
    assert [row["method"] for row in printed["rows"]] == ["zero-shot", "cma"]
    table = (out / "compare.md").read_text()
    assert "| method | lr | T2V R@1 |" in table and "| zero-shot |" in table and "| cma | 2.0e-03 |" in table
    saved = json.loads((out / "compare.json").read_text())
    assert saved["rows"] == printed["rows"] and saved["rows"][0]["trainable params"] == 0
    assert (out / "cma" / "adapter" / "adapter.safetensors").is_file() and not (
        out / "zero-shot" / "adapter"
    ).exists()


def test_compare_resume_reuses_finished_methods_and_refuses_changed_settings(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    data, out = str(toy_b_manifest), tmp_path / "cmp"
    args = [
        "compare",
        "--data",
        data,
        "--eval-data",
        data,
        "--model",
        str(tiny_spec),
        "--out",
        str(out),
        *FAST,
    ]
    first = _run(*args, "--methods", "zero-shot,cma")
    cma_report = out / "cma" / "report.json"
    report = json.loads(cma_report.read_text())
    del report["config"]["init_adapter"]  # as an older videoseek wrote it, before that setting existed
    cma_report.write_text(json.dumps(report))
    written = cma_report.stat().st_mtime_ns

    again = _run(*args, "--methods", "zero-shot,cma,text", "--resume")
    assert again["rows"][:2] == first["rows"]  # the finished rows, train seconds and memory included
    assert cma_report.stat().st_mtime_ns == written  # not trained again
    assert [row["method"] for row in again["rows"]] == ["zero-shot", "cma", "text"]
    assert (out / "text" / "report.json").is_file()

    changed = runner.invoke(app, [*args, "--methods", "cma", "--method-lr", "cma=2e-3", "--resume"])
    assert changed.exit_code == 2  # other settings: neither the old row nor a silent overwrite
    assert "checkpoint was made with different settings (lr)" in changed.stderr
    assert cma_report.stat().st_mtime_ns == written


def test_init_adapter_continues_that_adapter_from_its_weights_with_its_method_and_shape(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    from videoseek.adapter import load_adapter

    data, model = str(toy_b_manifest), str(tiny_spec)
    first = _run("train", "--data", data, "--model", model, "--out", str(tmp_path / "a"), *FAST,
                 "--method", "vision", "--rank", "4")  # fmt: skip
    # --method and --rank say otherwise: the adapter's own win. Zero epochs: the weights it starts from.
    args = [*FAST[2:], "--epochs", "0", "--method", "cma", "--rank", "8"]
    again = _run("train", "--data", data, "--model", model, "--out", str(tmp_path / "b"),
                 "--init-adapter", first["adapter_dir"], *args)  # fmt: skip
    assert (again["method"], again["trainable_params"]) == ("vision", first["trainable_params"])
    before, after = load_adapter(Path(first["adapter_dir"])), load_adapter(Path(again["adapter_dir"]))
    assert after.config == before.config and after.metadata["continued_from"] == first["adapter_version"]
    for name, tensor in before.tensors.items():
        assert after.tensors[name].equal(tensor), name

    refused = runner.invoke(app, ["train", "--data", data, "--model", model, "--out", str(tmp_path / "c"),
                                  "--init-adapter", str(tmp_path / "b")])  # fmt: skip
    assert refused.exit_code == 2 and "adapter_config.json" in refused.stderr, refused.stderr


def test_bad_input_exits_2_with_one_line_saying_what_to_fix(tiny_spec: ModelSpec, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "captions.jsonl", [{"video": "nope.mp4", "caption": "x"}])
    result = runner.invoke(
        app, ["train", "--data", str(manifest), "--model", str(tiny_spec), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: captions.jsonl line 1: video {(tmp_path / 'nope.mp4').resolve()} not found. "
        "Fix the entry, or pass --on-bad skip to leave such entries out."
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "dora"], "--method 'dora' is unknown"),
        (["--lr", "5"], "--lr must be in (0, 1)"),
        (["--on-bad", "ignore"], "--on-bad must be skip or error"),
        (["--model", "nonsense"], "needs NAME:TAG"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    manifest = write_manifest(tmp_path / "captions.jsonl", [{"video": "nope.mp4", "caption": "x"}])
    result = runner.invoke(app, ["train", "--data", str(manifest), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and message in result.stderr


def test_compare_without_held_out_data_is_refused(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["compare", "--data", str(toy_b_manifest), "--model", str(tiny_spec), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "pass --eval-data" in result.stderr
