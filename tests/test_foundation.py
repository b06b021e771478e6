"""The package installs, imports, and reads its settings with clear errors."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import videoseek
from videoseek.cli.app import app
from videoseek.model_spec import ModelSpec
from videoseek.settings import (
    NON_SETTING_VARIABLES,
    SECRET_MASK,
    SettingsError,
    get_settings,
    known_variables,
    load_settings,
    mask_url,
)

# Training is optional at runtime and heavy modules may pull torch; importing all of them is the point.
PACKAGES = ["videoseek", "service", "worker", "training"]

# The subcommands that work today; a new one is added here when its capability lands (issue 2: --help lists
# only working subcommands).
EXPECTED_COMMANDS = {
    "config",
    "serve",
    "demo",
    "adapter-info",
    "adapter-show",
    "ingest",
    "pairs",
    "reindex",
    "retrain",
    "versions",
    "rollback",
    "worker",
    "flower",
    "models",
    "train",
    "eval",
    "compare",
    "toy",
}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports(package: str) -> None:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
        if not info.name.endswith(".__main__"):  # runs the command
            importlib.import_module(info.name)


def test_the_service_and_the_worker_never_import_the_training_package() -> None:
    """Only the CLI and the retrain task (inside its functions) use training code: the API and an ingest
    worker load none of it (docs/architecture.md)."""
    code = (
        "import sys\n"
        "import worker.tasks, worker.runtime, service.routers.tasks\n"
        "from service.main import create_app\n"
        "from videoseek.cli.runtime import open_runtime\n"
        "from videoseek.settings import load_settings\n"
        "create_app(open_runtime(load_settings()))\n"
        "print(sorted(m for m in sys.modules if m.startswith('training')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_settings_load_with_no_environment() -> None:
    from videoseek.cli.runtime import run_mode

    settings = get_settings()
    assert run_mode(settings) == "embedded"
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
    assert settings.redis_url == "redis://127.0.0.1:6379/3"


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


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("VIDEOSEEK_")}


def test_documented_defaults_hold_with_no_videoseek_variables_in_an_empty_directory(tmp_path: Path) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "videoseek", "config"],
        capture_output=True,
        text=True,
        env=_clean_environment(),
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["data_dir"] == "videoseek-data"
    assert shown["model"] == "ViT-B-32:openai"
    assert shown["model_download"] == "auto"  # a missing model is fetched at first use
    assert shown["mode"] == "embedded"


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("VIDEOSEEK_QDRANT_URL", "VIDEOSEEK_QDRANT__URL"),
        ("VIDEOSEEK_REDISURL", "VIDEOSEEK_REDIS_URL"),
        ("videoseek_modle", "VIDEOSEEK_MODEL"),
        ("VIDEOSEEK_INGEST_SAMPLE_FPS", "VIDEOSEEK_INGEST__SAMPLE_FPS"),
        ("VIDEOSEEK_API_KEYS__0__KEY", "VIDEOSEEK_API_KEYS"),
    ],
)
def test_unknown_videoseek_variable_is_rejected_naming_the_setting_meant(
    monkeypatch: pytest.MonkeyPatch, variable: str, meant: str
) -> None:
    monkeypatch.setenv(variable, "http://localhost:6333")
    with pytest.raises(SettingsError) as excinfo:
        get_settings()
    assert f"unknown setting {variable}; did you mean {meant}?" in str(excinfo.value)


def test_unknown_variable_without_a_close_match_is_still_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEEK_ZZZ", "1")
    with pytest.raises(SettingsError, match="unknown setting VIDEOSEEK_ZZZ; unset it"):
        load_settings()


def test_every_known_variable_and_project_variable_is_accepted_in_any_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Lower case too: pydantic-settings reads names case-insensitively, so the check must as well.
    monkeypatch.setenv("videoseek_ingest__sample_fps", "2")
    monkeypatch.setenv(
        "VIDEOSEEK_QDRANT", '{"url": "http://qdrant:6333"}'
    )  # a nested model as one JSON value
    for name in NON_SETTING_VARIABLES:
        monkeypatch.setenv(name, "1")
    settings = load_settings()
    assert settings.ingest.sample_fps == 2
    assert settings.qdrant.url == "http://qdrant:6333"
    assert {"VIDEOSEEK_DATA_DIR", "VIDEOSEEK_QDRANT__URL", "VIDEOSEEK_API_KEYS"} <= known_variables()
    assert "VIDEOSEEK_MODEL__NAME" not in known_variables()  # the model spec is plain text, not a model


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ('[{"key": "k", "scopes": ["bogus"]}]', "VIDEOSEEK_API_KEYS (item 0, scopes[0])"),
        ('[{"key": "k"}, {"scopes": ["search"]}]', "VIDEOSEEK_API_KEYS (item 1, key)"),
    ],
)
def test_error_in_a_list_setting_names_its_variable_and_the_item(
    monkeypatch: pytest.MonkeyPatch, value: str, where: str
) -> None:
    monkeypatch.setenv("VIDEOSEEK_API_KEYS", value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert f"{where}:" in message
    named = set(re.findall(r"VIDEOSEEK_[A-Z0-9_]+", message))
    assert named <= known_variables(), f"names a variable that does not exist: {named - known_variables()}"


def test_error_in_a_nested_model_given_as_json_names_that_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEEK_QDRANT", '{"url": "qdrant:6333"}')
    with pytest.raises(SettingsError, match=re.escape("VIDEOSEEK_QDRANT (url):")):
        load_settings()


@pytest.mark.parametrize("variable", ["VIDEOSEEK_DATA_DIR", "VIDEOSEEK_QDRANT__PATH"])
@pytest.mark.parametrize("value", ["", "  "])
def test_empty_directory_setting_is_rejected_not_read_as_cwd(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"{variable}: .*must not be empty"):
        load_settings()


def test_config_output_never_shows_a_url_password_or_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEEK_REDIS_URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("VIDEOSEEK_QDRANT__URL", "https://admin:hunter3@qdrant:6333")
    monkeypatch.setenv("VIDEOSEEK_API_KEYS", '[{"key": "hunter4"}]')
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    assert "hunter" not in result.output
    shown = json.loads(result.output)
    assert shown["redis_url"] == f"redis://:{SECRET_MASK}@redis:6379/0"
    assert shown["qdrant"]["url"] == f"https://admin:{SECRET_MASK}@qdrant:6333"
    assert shown["api_keys"][0]["key"] == SECRET_MASK


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@h:6379/0", f"redis://user:{SECRET_MASK}@h:6379/0"),
        ("redis://h:6379/0?password=pw&db=1", f"redis://h:6379/0?password={SECRET_MASK}&db=1"),
        ("http://qdrant:6333?api_key=k", f"http://qdrant:6333?api_key={SECRET_MASK}"),
        ("redis://redis:6379/0?", "redis://redis:6379/0?"),  # nothing secret: left exactly as written
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_mask_url_hides_credentials_and_keeps_the_rest(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def _visible_commands() -> set[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    with typer.Context(group) as ctx:
        return {
            name
            for name in group.list_commands(ctx)
            if (command := group.get_command(ctx, name)) is not None and not command.hidden
        }


def test_help_lists_exactly_the_working_commands() -> None:
    assert _visible_commands() == EXPECTED_COMMANDS
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    commands_section = result.output.split("Commands", 1)[1]
    listed = set(re.findall(r"^\W*([a-z][a-z-]*) {2,}\S", commands_section, flags=re.MULTILINE))
    assert listed == EXPECTED_COMMANDS


@pytest.mark.parametrize("command", sorted(EXPECTED_COMMANDS))
def test_every_command_help_exits_zero(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
