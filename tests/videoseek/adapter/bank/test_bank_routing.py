"""A route reaches only the forward that set it: other forwards on the same model, in other threads, see their own.

Several banks share one model (the API's encoder workers, the frame embedder in embedded mode) and plain
forwards run on it too, at the same time in other threads. These tests hold one bank's forward inside the
model (blocked in a hook until the other thread is done) and run the other forward meanwhile, so the overlap
is certain, not a matter of timing.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytest
import torch
from adapter_kit import random_adapter_file, random_images
from torch import nn

from videoseek.adapter import AdapterBank, AdapterConfig, AdapterFile, AdapterSite, backbone_shape
from videoseek.adapter.bank.routing import RoutedDelta
from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec

ATOL = 1e-5
WAIT_S = 60  # only reached if the code under test deadlocks; the tests never wait for time to pass


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=ATOL)


def _adapters(clip: LoadedClip, count: int) -> list[AdapterFile]:
    shape = backbone_shape(clip.model)
    config = AdapterConfig(rank=4, shared_dim=8)
    return [random_adapter_file(clip.identity, shape, config, seed=70 + i) for i in range(count)]


@contextmanager
def _held_inside_forward(model: nn.Module, run: Callable[[], torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Run ``run`` in a thread and hold it inside the model's last vision block while the block runs.

    Yields the list its result lands in (filled once the block has exited and the thread has finished).
    """
    inside, release = threading.Event(), threading.Event()
    result: list[torch.Tensor] = []
    worker = threading.Thread(target=lambda: result.append(run()))

    def hold(module: nn.Module, args: object) -> None:
        if threading.current_thread() is worker and not inside.is_set():
            inside.set()
            assert release.wait(WAIT_S), "the other forward never finished"

    handle = model.visual.transformer.resblocks[-1].register_forward_pre_hook(hold)
    worker.start()
    try:
        assert inside.wait(WAIT_S), "the held forward never reached the model"
        yield result
    finally:
        release.set()
        worker.join()
        handle.remove()
    assert len(result) == 1, "the held forward failed"


def test_a_plain_forward_during_another_threads_routed_forward_sees_no_adapters(
    tiny_clip: LoadedClip, tiny_spec: ModelSpec
) -> None:
    (adapter,) = _adapters(tiny_clip, 1)
    bank = AdapterBank(tiny_clip, max_bytes=1 << 24)
    bank.add(adapter.version, adapter)
    images = random_images(3)
    adapted = bank.encode_images(images, [adapter.version] * 3)
    plain = load_clip(tiny_spec)
    with torch.no_grad():
        expected_plain = plain.model.encode_image(images)
    assert (adapted - expected_plain).abs().max() > 1e-2  # the adapter visibly changes the features

    run_adapted = partial(bank.encode_images, images, [adapter.version] * 3)
    with _held_inside_forward(tiny_clip.model, run_adapted) as held, torch.no_grad():
        during = tiny_clip.model.encode_image(images)  # same model, same batch size, no route of its own
    _close(during, expected_plain)
    _close(held[0], adapted)


def test_two_banks_on_one_model_forwarding_at_once_each_apply_only_their_own_adapters(
    tiny_clip: LoadedClip,
) -> None:
    first_adapter, second_adapter = _adapters(tiny_clip, 2)
    first, second = AdapterBank(tiny_clip, max_bytes=1 << 24), AdapterBank(tiny_clip, max_bytes=1 << 24)
    first.add(first_adapter.version, first_adapter)
    second.add(second_adapter.version, second_adapter)
    images = random_images(2)
    expected_first = first.encode_images(images, [first_adapter.version] * 2)
    expected_second = second.encode_images(images, [second_adapter.version, None])

    run_first = partial(first.encode_images, images, [first_adapter.version] * 2)
    with _held_inside_forward(tiny_clip.model, run_first) as held:
        during = second.encode_images(images, [second_adapter.version, None])
    _close(during, expected_second)
    _close(held[0], expected_first)


def test_banks_on_one_model_share_its_routed_sites_and_their_router(tiny_clip: LoadedClip) -> None:
    AdapterBank(tiny_clip, max_bytes=1 << 20)
    sites = [m for m in tiny_clip.model.modules() if isinstance(m, AdapterSite)]
    AdapterBank(tiny_clip, max_bytes=1 << 20)
    assert [m for m in tiny_clip.model.modules() if isinstance(m, AdapterSite)] == sites  # not wrapped twice
    routers = {site.delta.router for site in sites if isinstance(site.delta, RoutedDelta)}
    assert len(routers) == 1 and len(sites) == 2 * 2 * 2  # both towers, 2 layers, attn + mlp


def test_a_copy_of_a_routed_model_is_plain_clip_with_a_router_of_its_own(
    tiny_clip: LoadedClip, tiny_spec: ModelSpec
) -> None:
    AdapterBank(tiny_clip, max_bytes=1 << 20)
    copied = copy.deepcopy(tiny_clip.model)
    copied_routers = {m.router for m in copied.modules() if isinstance(m, RoutedDelta)}
    original_routers = {m.router for m in tiny_clip.model.modules() if isinstance(m, RoutedDelta)}
    assert len(copied_routers) == 1 and copied_routers.isdisjoint(original_routers)
    images = random_images(2)
    with torch.no_grad():
        _close(copied.encode_image(images), load_clip(tiny_spec).model.encode_image(images))


def test_an_adapter_bank_refuses_a_model_with_trainable_adapters(tiny_clip: LoadedClip) -> None:
    from videoseek.adapter import AlreadyAdapted, inject_adapters

    inject_adapters(tiny_clip.model, AdapterConfig(rank=4, shared_dim=8))
    with pytest.raises(AlreadyAdapted, match="needs a plain one"):
        AdapterBank(tiny_clip, max_bytes=1 << 20)
