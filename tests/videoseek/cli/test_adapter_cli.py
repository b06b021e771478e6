"""``videoseek adapter-info`` / ``adapter-show``: JSON on success, non-zero exit with the reason otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapter_kit import TINY_DEEP_NAME, TINY_NAME, random_adapter_file
from typer.testing import CliRunner

from videoseek.adapter import (
    AdapterConfig,
    BackboneShape,
    backbone_shape,
    count_parameters,
    store_adapter,
)
from videoseek.cli.app import app
from videoseek.clip import LoadedClip

runner = CliRunner()


@pytest.mark.usefixtures("tiny_spec")
def test_adapter_info_prints_counts_of_the_built_adapter() -> None:
    result = runner.invoke(app, ["adapter-info", "--model", TINY_NAME, "--rank", "4", "--shared-dim", "8"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    shape = BackboneShape.from_dict(payload["backbone"])
    expected = count_parameters(AdapterConfig(rank=4, shared_dim=8), shape)
    assert (
        payload["trainable_params"] == expected.trainable and payload["shared_params"] == expected.shared > 0
    )
    assert payload["percent_of_clip"] == round(100 * expected.trainable / payload["clip_params"], 4)

    unshared = runner.invoke(app, ["adapter-info", "--model", TINY_NAME, "--rank", "4", "--no-share"])
    text_only = runner.invoke(app, ["adapter-info", "--model", TINY_NAME, "--rank", "4", "--towers", "text"])
    assert json.loads(unshared.stdout[unshared.stdout.index("{") :])["shared_params"] == 0
    text_payload = json.loads(text_only.stdout[text_only.stdout.index("{") :])
    assert list(text_payload["per_tower_params"]) == ["text"]


@pytest.mark.usefixtures("tiny_spec")
def test_adapter_info_refuses_bad_combinations_with_the_reason() -> None:
    cases = {
        ("--model", "ViT-L-14"): "24 vision and 12 text layers",
        ("--model", TINY_DEEP_NAME): "3 vision and 2 text layers",
        ("--model", "ViT-B-32", "--shared-dim", "600"): "shared_dim 600 is larger than a tower width",
        ("--model", "NoSuch-7"): "unknown open_clip model",
        ("--towers", "audio"): "towers must be one of",
    }
    for args, reason in cases.items():
        result = runner.invoke(app, ["adapter-info", *args])
        assert result.exit_code == 2, args
        assert reason in result.stderr, (args, result.stderr)


def test_adapter_show_prints_version_config_and_base(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    adapter = random_adapter_file(
        tiny_clip.identity, backbone_shape(tiny_clip.model), AdapterConfig(rank=2), seed=5
    )
    version = store_adapter(adapter, tmp_path)
    result = runner.invoke(app, ["adapter-show", str(tmp_path / version)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["version"] == version and payload["adapter"]["rank"] == 2
    assert payload["base_model"]["fingerprint"] == tiny_clip.identity.fingerprint
    missing = runner.invoke(app, ["adapter-show", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "adapter_config.json is missing" in missing.stderr
