"""The training loop: what trains, the objective, accumulation, resuming, and what a run leaves behind."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training import loop
from training.activations import use_lean_activations
from training.batching import Normalizer
from training.config import ConfigError, SamplingConfig, TrainConfig
from training.data import ClipDataset, load_dataset
from training.frame_cache import FrameCache
from training.loop import Batch, lr_at, symmetric_infonce, train, train_step
from training.methods import continue_from, count_parameters, get_method, prepare
from training.run import DataPlan, run_training
from training.similarity import pairwise_scores
from videoseek.adapter import AdaptedClip, AdapterConfig, load_adapter
from videoseek.cancel import TaskCancelled
from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec

FAST = TrainConfig(method="cma", epochs=1, batch_size=4, lr=1e-3, shared_dim=8, frames=4, amp=False)


@pytest.fixture
def toy_data(
    toy_b_manifest: Path, tiny_clip: LoadedClip, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ClipDataset, FrameCache]:
    cache_dir = tmp_path_factory.getbasetemp() / "training-loop-cache"  # shared: decode the toy videos once
    cache = FrameCache(cache_dir, SamplingConfig(max_frames=4, image_size=tiny_clip.image_size))
    dataset = load_dataset(toy_b_manifest)
    assert cache.warm(dataset.records) == {}
    return dataset, cache


def test_lr_warms_up_linearly_then_decays_to_zero() -> None:
    cfg = replace(FAST, lr=0.5, warmup_frac=0.1)
    values = [lr_at(step, 100, cfg) / 0.5 for step in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[55] == pytest.approx(0.5, abs=0.01)
    assert all(a >= b for a, b in itertools.pairwise(values[10:])) and values[-1] < 1e-3


def test_symmetric_infonce_averages_both_directions() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.0, 0.0], [0.0, 3.0, 0.2]])
    labels = torch.arange(3)
    expected = (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.T, labels)
    ) / 2
    assert symmetric_infonce(logits).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("method", ["cma", "vision", "text", "full", "lora"])
def test_only_the_methods_tensors_are_updated(
    method: str, tiny_spec: ModelSpec, toy_data: tuple[ClipDataset, FrameCache]
) -> None:
    dataset, cache = toy_data
    cfg = replace(FAST, method=method)
    initial = load_clip(tiny_spec, "cpu")  # the same seed gives the same adapter initialisation as the run
    loop.seed_everything(cfg.seed)
    prepare(initial, get_method(method), cfg)
    before = initial.model.state_dict()

    clip = load_clip(tiny_spec, "cpu")
    result = train(clip, cfg, dataset, cache, log=lambda _: None)
    after = clip.model.state_dict()
    assert result.steps == 2 and set(after) == set(before)
    trainable = {id(p) for p in result.prepared.trainable}
    # every name a tensor goes by (a shared slice belongs to both towers' adapters)
    names = {n for n, p in clip.model.named_parameters(remove_duplicate=False) if id(p) in trainable}
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed == names, (
        f"{method}: changed but frozen {changed - names}, trainable but unchanged {names - changed}"
    )
    assert "logit_scale" not in names
    tower_prefix = {"vision": "visual.", "text": "transformer."}
    if method in tower_prefix:
        assert all(n.startswith(tower_prefix[method]) for n in names)
    if method == "full":
        assert len(names) == len(dict(clip.model.named_parameters())) - 1
    if method == "lora":  # peft's low-rank pairs on both towers' MLPs, nothing else
        assert all(".lora_A." in n or ".lora_B." in n for n in names)
        assert {n.split(".")[0] for n in names} == {"visual", "transformer"}
        assert {n.split(".mlp.")[1].split(".")[0] for n in names} == {"c_fc", "c_proj"}


def test_lora_starts_at_the_zero_shot_model_with_the_adapters_budget(tiny_spec: ModelSpec) -> None:
    from training.lora import lora_params_per_rank, lora_rank_for_budget

    plain, wrapped = load_clip(tiny_spec, "cpu"), load_clip(tiny_spec, "cpu")
    cma = prepare(load_clip(tiny_spec, "cpu"), get_method("cma"), FAST)
    lora = prepare(wrapped, get_method("lora"), FAST)
    budget, per_rank = count_parameters(cma.trainable), lora_params_per_rank(plain.model)
    rank = lora_rank_for_budget(plain.model, FAST.rank, FAST.shared_dim)
    assert count_parameters(lora.trainable) == rank * per_rank
    assert abs(rank * per_rank - budget) <= per_rank / 2  # the nearest rank to the adapter's size
    tokens = plain.tokenize(["a red circle", "two blue squares"], 16)
    with torch.no_grad():  # lora_B starts at zero: the wrapped model is the zero-shot one until it trains
        assert torch.allclose(plain.model.encode_text(tokens), wrapped.model.encode_text(tokens), atol=1e-6)


def test_sharing_ties_the_shared_slice_of_both_towers(tiny_spec: ModelSpec) -> None:
    shared = prepare(load_clip(tiny_spec, "cpu"), get_method("cma"), FAST)
    unshared = prepare(load_clip(tiny_spec, "cpu"), get_method("cma-noshare"), FAST)
    n_shared = sum(p.numel() for p in shared.trainable)
    n_unshared = sum(p.numel() for p in unshared.trainable)
    # 2 layers x 2 sites: the d_s x r weight + d_s bias are stored once instead of twice
    assert n_unshared - n_shared == 2 * 2 * (FAST.shared_dim * FAST.rank + FAST.shared_dim)


def test_grad_cache_accumulation_equals_the_full_batch_gradient(
    tiny_spec: ModelSpec, toy_data: tuple[ClipDataset, FrameCache]
) -> None:
    dataset, cache = toy_data
    clip = load_clip(tiny_spec, "cpu")
    prepared = prepare(clip, get_method("cma"), FAST)
    normalizer = Normalizer.for_model(clip.model)
    records = dataset.records[:6]  # one batch of 6: once whole, once as 3 micro-batches of 2
    from training.batching import load_frames

    batch = Batch(load_frames(cache, records), clip.tokenize([r.caption for r in records], 32))

    def loss_of(text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return symmetric_infonce(pairwise_scores(text, frames, mask, clip.logit_scale, "text_conditioned"))

    grads = []
    for micro in (6, 2):
        loss = train_step(
            clip.model, normalizer, batch, loss_of, micro, lambda: torch.autocast("cpu", enabled=False)
        )
        grads.append([p.grad.clone() for p in prepared.trainable])
        for p in prepared.trainable:
            p.grad = None
        assert loss > 0
    for full, accumulated in zip(*grads, strict=True):
        torch.testing.assert_close(accumulated, full, rtol=1e-3, atol=1e-6)


def test_an_interrupted_run_resumes_to_the_same_weights(
    tiny_spec: ModelSpec,
    toy_data: tuple[ClipDataset, FrameCache],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset, cache = toy_data
    cfg = replace(FAST, epochs=2, checkpoint_every=1)  # 2 steps per epoch, 4 in all
    straight = load_clip(tiny_spec, "cpu")
    expected = train(straight, cfg, dataset, cache, log=lambda _: None)

    calls = {"n": 0}
    real_load = loop.load_frames

    def crash_on_fourth_batch(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:  # in the middle of epoch 2
            raise KeyboardInterrupt
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "load_frames", crash_on_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        train(load_clip(tiny_spec, "cpu"), cfg, dataset, cache, out_dir=tmp_path, log=lambda _: None)
    monkeypatch.setattr(loop, "load_frames", real_load)
    assert torch.load(tmp_path / loop.CHECKPOINT_NAME, weights_only=True)["step"] == 3

    resumed_clip = load_clip(tiny_spec, "cpu")
    resumed = train(resumed_clip, cfg, dataset, cache, out_dir=tmp_path, resume=True, log=lambda _: None)
    assert resumed.steps == expected.steps == 4
    for a, b in zip(expected.prepared.trainable, resumed.prepared.trainable, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(loop.CheckpointMismatch, match=r"different settings.*lr"):
        train(
            load_clip(tiny_spec, "cpu"), replace(cfg, lr=5e-4), dataset, cache, out_dir=tmp_path, resume=True
        )


# What a format-1 checkpoint holds; resuming older checkpoints depends on it (a change needs a new format).
FORMAT_1_KEYS = {
    "format", "config", "model", "pairs", "step", "total_steps", "train_seconds", "history", "trainable",
    "optimizer", "rng",
}  # fmt: skip


def test_a_run_cancelled_by_on_step_resumes_to_exactly_the_weights_and_history_of_an_unbroken_run(
    tiny_spec: ModelSpec, toy_data: tuple[ClipDataset, FrameCache], tmp_path: Path
) -> None:
    dataset, cache = toy_data
    cfg = replace(FAST, method="vision", epochs=3)  # 2 steps per epoch; a checkpoint after each epoch only
    straight = train(load_clip(tiny_spec, "cpu"), cfg, dataset, cache, eval_set=dataset, log=lambda _: None)

    def cancel_at_fifth_step(done: loop.StepDone) -> None:
        if done.step == 5:
            raise TaskCancelled("cancelled by the test")

    with pytest.raises(TaskCancelled):
        train(
            load_clip(tiny_spec, "cpu"),
            cfg,
            dataset,
            cache,
            eval_set=dataset,
            out_dir=tmp_path,
            log=lambda _: None,
            on_step=cancel_at_fifth_step,
        )
    payload = torch.load(tmp_path / loop.CHECKPOINT_NAME, weights_only=True)
    assert set(payload) == FORMAT_1_KEYS and payload["format"] == loop.CHECKPOINT_FORMAT
    assert payload["step"] == 4  # epoch 2's checkpoint: step 5 is lost with the cancel and taken again

    seen: list[loop.StepDone] = []
    resumed_clip = load_clip(tiny_spec, "cpu")
    resumed = train(
        resumed_clip,
        cfg,
        dataset,
        cache,
        eval_set=dataset,
        out_dir=tmp_path,
        resume=True,
        log=lambda _: None,
        on_step=seen.append,
    )
    assert [(s.step, s.epoch) for s in seen] == [(5, 3), (6, 3)]
    assert resumed.steps == straight.steps == 6 and len(resumed.step_seconds) == 2
    assert resumed.history == straight.history  # every epoch's mean loss and metrics, bit for bit
    for a, b in zip(straight.prepared.trainable, resumed.prepared.trainable, strict=True):
        assert torch.equal(a, b)


def test_on_step_sees_every_step_in_order_and_an_exception_from_it_stops_the_run(
    tiny_spec: ModelSpec, toy_data: tuple[ClipDataset, FrameCache], tmp_path: Path
) -> None:
    dataset, cache = toy_data
    cfg = replace(FAST, epochs=2)  # 2 steps per epoch, 4 in all
    seen: list[loop.StepDone] = []
    result = train(load_clip(tiny_spec, "cpu"), cfg, dataset, cache, log=lambda _: None, on_step=seen.append)
    assert [(s.step, s.total_steps, s.epoch) for s in seen] == [(1, 4, 1), (2, 4, 1), (3, 4, 2), (4, 4, 2)]
    assert result.steps == 4 and all(s.loss > 0 for s in seen)

    def cancel_after_three(done: loop.StepDone) -> None:
        if done.step == 3:
            raise TaskCancelled("cancelled by the test")

    with pytest.raises(TaskCancelled):
        train(load_clip(tiny_spec, "cpu"), cfg, dataset, cache, out_dir=tmp_path, on_step=cancel_after_three)
    # The run stopped in epoch 2: its checkpoint is the one of epoch 1, from which it could resume.
    assert torch.load(tmp_path / loop.CHECKPOINT_NAME, weights_only=True)["step"] == 2


def test_a_continued_adapter_keeps_its_own_config_even_the_fields_no_method_sets(
    tiny_spec: ModelSpec, tmp_path: Path
) -> None:
    # A vision adapter saved with share=True (moot for one tower) and its own init_std.
    config = AdapterConfig(rank=4, shared_dim=8, towers="vision", share=True, init_std=0.02)
    version = AdaptedClip(load_clip(tiny_spec, "cpu"), config).save(tmp_path / "a")
    cfg = continue_from(FAST, tmp_path / "a")
    assert (cfg.method, cfg.rank, cfg.shared_dim) == ("vision", 4, 8)
    prepared = prepare(load_clip(tiny_spec, "cpu"), get_method(cfg.method), cfg)
    assert prepared.adapted is not None and prepared.adapted.config == config
    assert prepared.init_version == version
    with pytest.raises(ConfigError, match="is a vision adapter, not cma"):
        prepare(load_clip(tiny_spec, "cpu"), get_method("cma"), replace(cfg, method="cma"))


def test_a_two_step_run_writes_a_loadable_adapter_and_a_report(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    dataset = load_dataset(toy_b_manifest)
    plan = DataPlan(train=dataset, eval=dataset, cache_dir=tmp_path / "cache")
    result, version = run_training(tiny_spec, FAST, plan, tmp_path / "out", log=lambda _: None)
    assert result.steps == 2 and version

    adapter = load_adapter(tmp_path / "out" / "adapter", expected_base=load_clip(tiny_spec, "cpu").identity)
    assert adapter.version == version and adapter.metadata["method"] == "cma"
    reloaded = AdaptedClip(load_clip(tiny_spec, "cpu"), adapter.config, init=adapter)
    tokens = reloaded.tokenize(["a clip"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_text(tokens), result.prepared.adapted.encode_text(tokens))

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["adapter"]["version"] == version and report["steps"] == 2
    assert report["trainable_params"] == sum(t.numel() for t in adapter.tensors.values())
    assert [row["epoch"] for row in report["history"]] == [0, 1]
    assert (tmp_path / "out" / "training.png").stat().st_size > 1000


def test_lean_quickgelu_gives_the_same_outputs_and_gradients_and_keeps_less(tiny_spec: ModelSpec) -> None:
    plain, lean = load_clip(tiny_spec, "cpu"), load_clip(tiny_spec, "cpu")
    assert use_lean_activations(lean.model) == 4  # 2 vision + 2 text blocks of the tiny CLIP
    images = torch.randn(3, 3, lean.image_size, lean.image_size, requires_grad=True)

    def run(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, int]:
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        x = images.detach().clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model.encode_image(x)
        out.square().sum().backward()
        assert x.grad is not None
        return out.detach(), x.grad, sum(saved.values())

    out_plain, grad_plain, kept_plain = run(plain.model)
    out_lean, grad_lean, kept_lean = run(lean.model)
    assert torch.equal(out_plain, out_lean)
    torch.testing.assert_close(grad_lean, grad_plain, rtol=1e-5, atol=1e-7)
    assert kept_lean < kept_plain


def test_early_stopping_keeps_the_best_epochs_weights_and_stops_after_patience(
    tiny_spec: ModelSpec, toy_data: tuple[ClipDataset, FrameCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, cache = toy_data
    # Validation that peaks at epoch 2 and only falls after it: the run keeps epoch 2 and stops at epoch 4.
    scores = iter([10.0, 20.0, 40.0, 30.0, 25.0, 99.0, 99.0])
    snapshots: dict[int, list[torch.Tensor]] = {}
    run_holder: dict[str, loop.RunSetup] = {}

    def scripted(run: loop.RunSetup) -> dict[str, object]:
        run_holder["run"] = run
        value = next(scores)
        recall = {"R@1": value, "R@5": value, "R@10": value, "MRR": value / 100}
        return {run.cfg.pooling: {"t2v": recall, "v2t": recall}}

    real_history_row = loop.history_row

    def remembering(epoch: int, step: int, losses: list[float], metrics: object) -> dict[str, object]:
        snapshots[epoch] = [t.detach().clone() for t in run_holder["run"].prepared.trainable]
        return real_history_row(epoch, step, losses, metrics)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "evaluate_run", scripted)
    monkeypatch.setattr(loop, "history_row", remembering)
    cfg = replace(FAST, epochs=6, patience=2)
    result = train(load_clip(tiny_spec, "cpu"), cfg, dataset, cache, eval_set=dataset, log=lambda _: None)

    assert (result.best_epoch, result.stopped_early) == (2, True)
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3, 4]  # epochs 5 and 6 never ran
    assert result.final_metrics is not None
    assert result.final_metrics[cfg.pooling]["t2v"]["R@1"] == 40.0
    for kept, best in zip(result.prepared.trainable, snapshots[2], strict=True):
        torch.testing.assert_close(kept.detach(), best, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(snapshots[2], snapshots[4], strict=True))


def test_without_patience_the_run_trains_every_epoch_and_keeps_the_last_weights(
    tiny_spec: ModelSpec, toy_data: tuple[ClipDataset, FrameCache]
) -> None:
    dataset, cache = toy_data
    result = train(load_clip(tiny_spec, "cpu"), replace(FAST, epochs=2), dataset, cache, log=lambda _: None)
    assert (result.best_epoch, result.stopped_early, len(result.history)) == (None, False, 3)
