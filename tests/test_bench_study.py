"""bench/study.py's bookkeeping: the lr is picked on validation at seed 0, rows average the other seeds at it,
a finished cell is reused only with the same settings, and each seed draws its own videos."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_bench

from training.config import TrainConfig
from training.data import ClipDataset, ClipRecord


@pytest.fixture(scope="module")
def study() -> ModuleType:
    return load_bench("study")


def cell(lr: float, seed: int, val: float, r1: float, method: str = "cma", size: int = 40) -> dict[str, Any]:
    return {
        "variant": "b", "method": method, "size": size, "config": {"lr": lr, "seed": seed},
        "val_score": val, "test": {"R@1": r1, "R@5": 2 * r1, "MRR": r1 + 1},
        "trainable_params": 33792, "train_s": 10.0,
    }  # fmt: skip


def test_the_lr_is_picked_on_seed_0_validation_never_on_test(study: ModuleType) -> None:
    group = [
        cell(1e-3, 0, val=20.0, r1=50.0),  # the best test score, the worse validation score
        cell(3e-3, 0, val=25.0, r1=10.0),
        cell(1e-3, 1, val=99.0, r1=50.0),  # another seed's validation does not vote
    ]
    assert study.pick_lr(group) == 3e-3


def test_a_row_averages_every_seed_at_the_picked_lr_and_only_those(study: ModuleType) -> None:
    cells = [
        cell(1e-3, 0, val=20.0, r1=50.0),
        cell(3e-3, 0, val=25.0, r1=10.0),
        cell(3e-3, 1, val=21.0, r1=14.0),
        cell(1e-4, 0, val=30.0, r1=5.0, method="full"),
    ]
    rows = study.summarize(cells)
    assert [(r["method"], r["lr"], r["seeds"]) for r in rows] == [("full", 1e-4, 1), ("cma", 3e-3, 2)]
    cma = rows[1]
    assert cma["R@1"] == 12.0 and cma["R@1_sd"] == pytest.approx(2.83, abs=0.01) and cma["R@5"] == 24.0
    assert rows[0]["R@1_sd"] is None  # one seed has no spread
    assert "| b | cma | 40 | 300 (0) | 3.0e-03 | 2 | 12.0 | 2.8 |" in study.table(rows)


def test_a_finished_cell_is_reused_only_with_exactly_its_settings(study: ModuleType, tmp_path: Path) -> None:
    cfg = TrainConfig(method="cma", lr=3e-3, seed=0)
    path = tmp_path / "cell.json"
    study.write_atomically(path, '{"config": ' + json.dumps(cfg.to_dict()) + ', "val_score": 1}')
    assert study.cached_cell(path, cfg) == {
        "config": cfg.to_dict() | {"betas": list(cfg.betas)},
        "val_score": 1,
    }
    assert study.cached_cell(path, TrainConfig(method="cma", lr=1e-2, seed=0)) is None
    path.write_text("{cut short")
    assert study.cached_cell(path, cfg) is None
    assert not list(tmp_path.glob("*.partial"))


def test_each_seed_draws_its_own_videos_with_all_their_captions(study: ModuleType) -> None:
    records = [ClipRecord(Path(f"v{v}.mp4"), f"caption {c} of {v}") for v in range(30) for c in range(3)]
    dataset = ClipDataset(records, "train")
    first, again, other = (study.videos_subset(dataset, 10, seed) for seed in (0, 0, 1))
    videos = [{r.video for r in d.records} for d in (first, again, other)]
    assert len(videos[0]) == 10 and len(first.records) == 30  # three captions for each chosen video
    assert videos[0] == videos[1] and videos[0] != videos[2]
    with pytest.raises(SystemExit, match="only 30 videos"):
        study.videos_subset(dataset, 31, 0)


def test_the_step_budget_is_the_recipes_and_the_grid_scales_with_the_batch(study: ModuleType) -> None:
    from training.recipe import recommended_config

    cfg = study.cell_config("cma", 120, 1.0, 0)
    recipe = recommended_config(120, study.SPEC)
    assert (cfg.batch_size, cfg.epochs, cfg.patience) == (recipe.batch_size, recipe.epochs, recipe.patience)
    assert study.cell_config("cma", 120, 3.0, 0).lr == pytest.approx(3 * cfg.lr, rel=1e-2)
    assert study.cell_config("full", 120, 1.0, 0).lr == pytest.approx(cfg.lr / 100, rel=1e-2)
    assert study.cell_config("zero-shot", 120, 1.0, 0).epochs == 0


def test_the_tables_cover_every_finished_cell_of_every_run(study: ModuleType, tmp_path: Path) -> None:
    first, second = cell(1e-3, 0, val=20.0, r1=5.0), cell(3e-3, 0, val=25.0, r1=7.0)
    for one in (first, second):
        path = tmp_path / "cells" / "b" / "cma" / "n40" / f"lr{one['config']['lr']:g}-s0.json"
        study.write_atomically(path, json.dumps(one))
    (tmp_path / "cells" / "b" / "cma" / "n40" / "lr0.01-s0.json").write_text("{cut short")
    cells = study.load_cells(tmp_path)
    assert sorted(c["config"]["lr"] for c in cells.values()) == [1e-3, 3e-3]
    assert study.pick_lr(study.group_of(cells, "b", "cma", 40)) == 3e-3
    assert study.group_of(cells, "b", "cma", 120) == []


def test_another_step_budget_makes_its_own_cells_rows_and_lr_pick(study: ModuleType, tmp_path: Path) -> None:
    recipe, longer = (
        study.cell_config("cma", 360, 1.0, 0),
        study.cell_config("cma", 360, 1.0, 0, study.Variation(target_steps=600)),
    )
    assert longer.epochs == 2 * recipe.epochs and longer.batch_size == recipe.batch_size
    assert study.cell_path(tmp_path, "b", "cma", 120, recipe, study.Variation()).name == "lr0.01-s0.json"
    assert (
        study.cell_path(tmp_path, "b", "cma", 120, longer, study.Variation(600)).name
        == "lr0.01-s0-steps600.json"
    )
    cells = [
        cell(1e-3, 0, val=20.0, r1=5.0),  # written before the budget was a setting: the recipe's
        cell(3e-3, 0, val=10.0, r1=6.0) | {"target_steps": study.TARGET_STEPS},
        cell(3e-3, 0, val=30.0, r1=9.0) | {"target_steps": 600, "steps": 580},
    ]
    rows = study.summarize(cells)
    assert [(r["target_steps"], r["lr"], r["R@1"]) for r in rows] == [(300, 1e-3, 5.0), (600, 3e-3, 9.0)]
    assert "| b | cma | 40 | 600 (580) |" in study.table(rows)
    by_path = {str(i): c for i, c in enumerate(cells)}
    assert study.pick_lr(study.group_of(by_path, "b", "cma", 40)) == 1e-3
    assert study.pick_lr(study.group_of(by_path, "b", "cma", 40, study.Variation(600))) == 3e-3


def test_a_budget_run_writes_suffixed_cells_and_zero_shot_once(
    study: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [ClipRecord(Path(f"v{v}.mp4"), f"caption {c} of {v}") for v in range(30) for c in range(3)]
    monkeypatch.setattr(
        study, "load_data", lambda *_: study.Data(ClipDataset(records, "train"), None, None, None)
    )

    def fake_cell(
        data: Any, method: str, subset: Any, size: int, cfg: TrainConfig, variation: Any
    ) -> dict[str, Any]:
        return cell(cfg.lr, cfg.seed, val=cfg.lr, r1=1.0, method=method, size=size) | {
            "config": cfg.to_dict(), "target_steps": variation.target_steps, "rank": variation.rank, "steps": 1,
        }  # fmt: skip

    monkeypatch.setattr(study, "run_cell", fake_cell)
    scale = study.Scale(30, (10,), (0, 1), (1.0, 3.0), 5, 5, variation=study.Variation(target_steps=600))
    other_run = tmp_path / "cells" / "b" / "full" / "n10" / "lr5e-05-s0.json"  # finished by another process
    study.write_atomically(other_run, json.dumps(cell(5e-5, 0, val=1.0, r1=2.0, method="full", size=10)))
    study.run_variant(tmp_path, "b", ["zero-shot", "cma"], scale, {})
    tables = json.loads((tmp_path / "study.json").read_text())
    assert {r["method"] for r in tables["rows"]} == {"zero-shot", "full", "cma"}  # the other run's cell stays
    names = sorted(
        p.relative_to(tmp_path / "cells" / "b").as_posix() for p in (tmp_path / "cells").rglob("*.json")
    )
    assert names == [
        "cma/n10/lr0.005-s0-steps600.json",  # the grid at seed 0 (batch 8: 1e-2 x sqrt(8/32) x 1, 3)
        "cma/n10/lr0.015-s0-steps600.json",
        "cma/n10/lr0.015-s1-steps600.json",  # seed 1 at the point validation picked (here: the larger lr)
        "full/n10/lr5e-05-s0.json",
        "zero-shot/n10/lr0.005-s0.json",  # trains nothing: the recipe's file whatever the budget
    ]


def test_the_docs_figure_keeps_every_kept_row_a_study_does_not_replace_and_writes_them_back(
    study: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figure = load_bench("quality_plot")
    kept = [
        {
            "variant": "b",
            "method": m,
            "size": n,
            "target_steps": study.TARGET_STEPS,
            "R@1": 5.0,
            "R@1_sd": 1.0,
        }
        for m in ("full", "cma")
        for n in (40, 120)
    ]
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps({"rows": kept}))
    rerun = {"variant": "b", "method": "cma", "size": 40, "target_steps": study.TARGET_STEPS}
    rerun |= {"R@1": 9.0, "R@1_sd": 0.5}
    longer = {**rerun, "target_steps": 600, "R@1": 11.0}  # another budget: a row of its own
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "study.json").write_text(json.dumps({"rows": [rerun, longer]}))
    png = tmp_path / "q.png"
    argv = ["quality_plot", "--out", str(tmp_path / "out"), "--rows", str(rows_file), "--png", str(png)]
    monkeypatch.setattr(sys, "argv", argv)
    figure.main()
    rows = json.loads(rows_file.read_text())["rows"]
    assert len(rows) == 5 and rerun in rows and longer in rows
    assert [
        r["R@1"] for r in rows if r["size"] == 40 and r["method"] == "cma" and r["target_steps"] == 300
    ] == [9.0]
    assert png.stat().st_size > 0


def test_the_docs_rows_never_take_a_quick_studys_rows(
    study: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    figure = load_bench("quality_plot")
    rows_file = tmp_path / "rows.json"
    before = json.dumps({"rows": [{"variant": "b", "method": "cma", "size": 40, "R@1": 5.0, "R@1_sd": 1.0}]})
    rows_file.write_text(before)
    smoke_cells = [cell(1e-2, seed, val=20.0, r1=9.0, size=24) for seed in (0, 1)]
    for smoke_cell in smoke_cells:
        smoke_cell["test_videos"] = study.QUICK.test_videos  # as a --quick run's cells record it
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "study.json").write_text(json.dumps({"rows": study.summarize(smoke_cells)}))
    png = tmp_path / "q.png"
    argv = ["quality_plot", "--out", str(tmp_path / "out"), "--rows", str(rows_file), "--png", str(png)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):
        figure.main()
    assert "--quick" in capsys.readouterr().err
    assert rows_file.read_text() == before and not png.exists()


def test_a_row_reports_mean_pooling_only_when_every_seed_recorded_it(study: ModuleType) -> None:
    both = [cell(1e-2, seed, val=20.0, r1=10.0) for seed in (0, 1)]
    for c, mean_r1 in zip(both, (30.0, 34.0), strict=True):
        c["test_R@1_by_pooling"] = {"text_conditioned": 10.0, "mean": mean_r1}
    assert study.summarize(both)[0]["R@1_mean_pooling"] == 32.0
    del both[1]["test_R@1_by_pooling"]  # a cell from before it was recorded
    assert study.summarize(both)[0]["R@1_mean_pooling"] is None


def test_another_rank_makes_its_own_cells_rows_and_plot_line_and_keeps_old_rows_apart(
    study: ModuleType, tmp_path: Path
) -> None:
    wider = study.Variation(rank=16)
    cfg = study.cell_config("cma", 360, 1.0, 0, wider)
    assert cfg.rank == 16 and cfg.lr == study.cell_config("cma", 360, 1.0, 0).lr  # the same grid
    assert study.cell_path(tmp_path, "b", "cma", 120, cfg, wider).name == "lr0.01-s0-rank16.json"
    assert study.Variation(600, 16).suffix == "-steps600-rank16"
    recipe_row = {"variant": "b", "method": "cma", "size": 40, "R@1": 5.0}  # a kept row from before ranks
    assert study.row_key(recipe_row) == ("b", "cma", 40, study.Variation())
    cells = [
        cell(1e-3, 0, val=20.0, r1=5.0) | {"config": {"lr": 1e-3, "seed": 0, "rank": 8}},
        cell(3e-3, 0, val=30.0, r1=9.0) | {"config": {"lr": 3e-3, "seed": 0, "rank": 16}, "steps": 7},
    ]
    rows = study.summarize(cells)
    assert [(r["rank"], r["lr"], r["R@1"]) for r in rows] == [(8, 1e-3, 5.0), (16, 3e-3, 9.0)]
    assert "| b | cma, rank 16 | 40 | 300 (7) | 3.0e-03 |" in study.table(rows)
    figure = load_bench("quality_plot")
    assert len(figure.merged([recipe_row], rows)) == 2  # the rank-8 row replaces the kept one, rank 16 is new
    study.plot(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


def test_the_noisy_variant_swaps_a_share_of_training_captions_for_other_videos_and_always_the_same(
    study: ModuleType,
) -> None:
    records = [ClipRecord(Path(f"v{v}.mp4"), f"caption {c} of {v}") for v in range(200) for c in range(3)]
    dataset = ClipDataset(records, "train")
    noisy, again = (study.with_wrong_captions(dataset, 0.3, study.NOISE_SEED) for _ in range(2))
    # one draw: every method, size and seed sees the same wrong captions
    assert noisy.records == again.records
    wrong = [n for r, n in zip(records, noisy.records, strict=True) if n.caption != r.caption]
    assert 0.25 < len(wrong) / len(records) < 0.35
    assert all(not n.caption.endswith(f"of {n.video.stem[1:]}") for n in wrong)  # another video's caption
    assert [r.clip_key for r in noisy.records] == [r.clip_key for r in records]  # the videos stay
    assert study.with_wrong_captions(dataset, 0.0, study.NOISE_SEED) is dataset
    assert study.VARIANTS["noisy"].videos == "b"  # domain B's videos and frame cache, not a third generation


def test_a_variants_own_clip_is_pre_trained_once_and_again_only_for_another_recipe(
    study: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import videoseek.toy.pretrain as pretraining
    from videoseek.clip import load_clip
    from videoseek.toy.pretrain import PretrainConfig

    tiny = PretrainConfig(steps=2, batch_size=8, warmup_steps=1, textured_fraction=0.5)
    monkeypatch.setattr(study, "CLIPS", {"textured": tiny})
    runs: list[PretrainConfig] = []
    real = pretraining.pretrain
    monkeypatch.setattr(
        pretraining, "pretrain", lambda path, cfg, log: runs.append(cfg) or real(path, cfg, log=log)
    )
    assert study.clip_spec(tmp_path, None) == study.SPEC  # the committed toy CLIP
    spec = study.clip_spec(tmp_path, "textured")
    assert spec.path == tmp_path / "clips" / "textured.safetensors" and runs == [tiny]
    assert load_clip(spec).identity.checkpoint_sha256 != load_clip(study.SPEC).identity.checkpoint_sha256
    study.clip_spec(tmp_path, "textured")
    assert runs == [tiny]  # made once: a stopped study resumes without pre-training again
    monkeypatch.setattr(study, "CLIPS", {"textured": replace(tiny, steps=3)})
    study.clip_spec(tmp_path, "textured")
    assert [r.steps for r in runs] == [2, 3]  # a file of another recipe is not this variant's CLIP
    for name in ("known-textured", "b-textured"):  # the same videos and frame cache as the committed CLIP's
        assert study.VARIANTS[name].clip == "textured" and study.VARIANTS[name].videos in study.VARIANTS
