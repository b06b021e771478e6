"""The short text forward (``encode_text_tokens``) is open_clip's ``CLIP.encode_text``, only on fewer positions.

It re-implements open_clip_torch 3.3.0's ``CLIP.encode_text`` to skip the positions after the batch's last
end-of-text token; these tests pin it to the real method so an open_clip upgrade that changes the text forward
fails here. Tolerance: the causal mask gives the skipped positions exactly zero attention, so the only
difference is float32 matmul blocking over another sequence length: ``atol=1e-5`` on features of magnitude ~1-4
(observed ~2e-6 on ViT-B-32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import open_clip
import pytest
import torch
from adapter_kit import TINY_NAME

from videoseek.clip import LoadedClip, encode_text_tokens, load_clip
from videoseek.model_spec import ModelSpec

ATOL = 1e-5
# One word to a long sentence: the batch runs up to its longest text's end-of-text token.
MIXED_TEXTS = [
    "a",
    "a red ball bounces on the grass in the park while two children watch it roll away",
    "two dogs run",
    "snow falls slowly on a quiet street at night",
]


@pytest.fixture(scope="module")
def vit_b_32() -> LoadedClip:
    return load_clip(ModelSpec.parse("ViT-B-32:random"))


class _Spy:
    """Records what the text transformer is run on and whether ``model.encode_text`` was called."""

    def __init__(self, model: Any) -> None:
        self.lengths: list[int] = []
        self.plain_calls = 0
        self._model = model
        self._hook = getattr(model, "text", model).transformer.register_forward_hook(
            lambda _m, args, _o: self.lengths.append(args[0].shape[1])
        )
        plain: Callable[..., torch.Tensor] = model.encode_text

        def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
            self.plain_calls += 1
            return plain(*args, **kwargs)

        model.encode_text = (
            counted  # on the instance: the class check in encode_text_tokens still sees CLIP's
        )

    def close(self) -> None:
        self._hook.remove()
        del self._model.encode_text


@pytest.mark.parametrize("which", ["tiny", "ViT-B-32"])
def test_short_text_forward_equals_open_clip_encode_text_for_mixed_lengths(
    which: str, request: pytest.FixtureRequest
) -> None:
    clip: LoadedClip = request.getfixturevalue("tiny_clip" if which == "tiny" else "vit_b_32")
    tokens = clip.tokenize(MIXED_TEXTS, context_length=min(32, clip.context_length - 2))
    ends = tokens.argmax(dim=-1) + 1
    assert len(set(ends.tolist())) == len(MIXED_TEXTS) and int(ends.max()) < clip.context_length
    with torch.no_grad():
        expected = clip.model.encode_text(tokens)
        spy = _Spy(clip.model)
        try:
            short = encode_text_tokens(clip.model, tokens)
        finally:
            spy.close()
    assert spy.plain_calls == 0 and spy.lengths == [int(ends.max())]  # really the short path
    torch.testing.assert_close(short, expected, rtol=0, atol=ATOL)
    assert float(expected.abs().max()) > 0.1  # not trivially zero features


def _custom_text_clip(tiny_clip: LoadedClip) -> Any:
    return open_clip.create_model(TINY_NAME, force_custom_text=True).eval()


def _subclass_with_its_own_encode_text(tiny_clip: LoadedClip) -> Any:
    class Reweighted(open_clip.CLIP):  # type: ignore[misc]
        def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
            return 2 * super().encode_text(text, normalize)

    model = Reweighted(**open_clip.get_model_config(TINY_NAME)).eval()
    model.load_state_dict(tiny_clip.model.state_dict())
    return model


def _other_pooling(tiny_clip: LoadedClip) -> Any:
    tiny_clip.model.text_pool_type = "last"  # type: ignore[assignment]
    return tiny_clip.model


def _no_causal_mask(tiny_clip: LoadedClip) -> Any:
    tiny_clip.model.attn_mask = None  # type: ignore[assignment]
    return tiny_clip.model


@pytest.mark.parametrize(
    "unsupported", [_custom_text_clip, _subclass_with_its_own_encode_text, _other_pooling, _no_causal_mask]
)
def test_models_the_short_forward_does_not_mirror_get_their_own_encode_text(
    unsupported: Callable[[LoadedClip], Any], tiny_clip: LoadedClip
) -> None:
    model = unsupported(tiny_clip)
    tokens = tiny_clip.tokenize(MIXED_TEXTS, context_length=12)
    with torch.no_grad():
        expected = model.encode_text(tokens)
        spy = _Spy(model)
        try:
            got = encode_text_tokens(model, tokens)
        finally:
            spy.close()
    assert spy.plain_calls == 1 and spy.lengths == [tiny_clip.context_length]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
