"""The package installs, imports, and reads its settings with clear errors."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import videoseek
from videoseek.core.model_spec import ModelSpec
from videoseek.core.settings import SettingsError, get_settings, load_settings

# Training is optional at runtime and heavy modules may pull torch; importing all of them is the point.
PACKAGES = ["videoseek.core", "videoseek.service", "videoseek.worker", "videoseek.training", "videoseek.toy"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports(package: str) -> None:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
        importlib.import_module(info.name)


def test_settings_load_with_no_environment() -> None:
    settings = get_settings()
    assert settings.embedded
    assert str(settings.model) == "ViT-B-32:openai"
    assert settings.qdrant.url is None
    assert settings.qdrant_path == settings.data_dir / "qdrant"
    assert get_settings() is settings  # cached


def test_nested_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEEK_INGEST__SAMPLE_FPS", "2.5")
    monkeypatch.setenv("VIDEOSEEK_MODEL", "toy")
    monkeypatch.setenv("VIDEOSEEK_REDIS_URL", "redis://127.0.0.1:6379/3")
    settings = load_settings()
    assert settings.ingest.sample_fps == 2.5
    assert settings.model.kind == "toy"
    assert not settings.embedded


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VIDEOSEEK_QDRANT__URL", "htp:/not-a-url"),
        ("VIDEOSEEK_QDRANT__URL", "http://localhost:99999"),
        ("VIDEOSEEK_REDIS_URL", "localhost:6379"),
        ("VIDEOSEEK_MODEL", "ViT-B-32"),
        ("VIDEOSEEK_INGEST__SAMPLE_FPS", "-1"),
    ],
)
def test_bad_setting_fails_with_variable_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert variable in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ViT-B-32:openai", "pretrained"),
        ("ViT-B-32:/models/clip.pt", "checkpoint"),
        ("ViT-B-16:weights.safetensors", "checkpoint"),
        ("local-dir:/models/clip", "local-dir"),
        ("ViT-B-32:random", "random"),
        ("toy", "toy"),
    ],
)
def test_model_spec_roundtrips_through_text(text: str, kind: str) -> None:
    spec = ModelSpec.parse(text)
    assert spec.kind == kind
    assert ModelSpec.parse(str(spec)) == spec


def test_cli_config_reports_bad_settings_and_exits_nonzero(tmp_path: Path) -> None:
    env = {"VIDEOSEEK_QDRANT__URL": "qdrant:6333", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "videoseek", "config"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "VIDEOSEEK_QDRANT__URL" in result.stderr


def test_version_is_exposed() -> None:
    assert videoseek.__version__


def test_malformed_json_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEEK_API_KEYS", '[{"key": 1')
    with pytest.raises(SettingsError, match="VIDEOSEEK_API_KEYS: not valid JSON"):
        load_settings()


def test_api_keys_parse_with_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "VIDEOSEEK_API_KEYS", '[{"key": "s3cret", "scopes": ["search", "ingest"], "collections": ["pets"]}]'
    )
    (key,) = load_settings().api_keys
    assert key.key.get_secret_value() == "s3cret"
    assert key.scopes == ["search", "ingest"]
    assert key.collections == ["pets"]
