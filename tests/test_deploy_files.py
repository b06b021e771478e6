"""docker-compose.yml, deploy/Dockerfile, .dockerignore and .env.example describe a stack that would start healthy.

There is no Docker engine where the tests run, so the files are checked statically: the compose file's structure
(every long-running service has a healthcheck and a restart policy, every dependency waits for health, Qdrant is
not published and matches the pinned client, each videoseek command is one the CLI has), the image's user and
what its build context holds. The slow test builds the image's Python environment as the Dockerfile's RUN line
does, in a throwaway venv, from exactly the files the Dockerfile copies.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from videoseek.cli.app import app
from videoseek.settings import NON_SETTING_VARIABLES, known_variables

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = REPO_ROOT / "docker-compose.yml"
GPU_OVERRIDE = REPO_ROOT / "deploy" / "compose.gpu.yml"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
LONG_RUNNING = {"qdrant", "redis", "api", "worker", "flower"}
ONE_SHOT = {"demo-seed"}
_DURATION = re.compile(r"^\d+(ms|s|m|h)$")
_SERVICE_KEYS = {
    "image", "build", "command", "environment", "volumes", "ports", "depends_on", "healthcheck", "restart",
    "deploy",
}  # fmt: skip


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _uses_videoseek_image(service: dict[str, Any]) -> bool:
    return "build" in service and service["build"]["dockerfile"] == "deploy/Dockerfile"


def test_the_compose_file_has_the_services_and_only_known_keys() -> None:
    services = _services()
    assert set(services) == LONG_RUNNING | ONE_SHOT
    for name, service in services.items():
        assert set(service) <= _SERVICE_KEYS, (name, set(service) - _SERVICE_KEYS)
        assert "image" in service, name  # the built image is named once and shared by the videoseek services
    assert set(_compose()) <= {"services", "volumes"} | {k for k in _compose() if k.startswith("x-")}


def test_every_long_running_service_has_a_healthcheck_and_restarts_unless_stopped() -> None:
    for name, service in _services().items():
        if name in ONE_SHOT:
            assert service["restart"] == "no" and service["healthcheck"] == {"disable": True}, name
            continue
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]
        assert isinstance(check["test"], list) and check["test"][0] in ("CMD", "CMD-SHELL"), name
        for field in ("interval", "timeout", "start_period"):
            assert _DURATION.match(str(check[field])), (name, field, check[field])
        assert int(check["retries"]) >= 3, name


def test_every_dependency_waits_until_it_is_healthy() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dependency)
            assert "test" in services[dependency]["healthcheck"], (name, dependency)
    assert set(services["api"]["depends_on"]) == {"qdrant", "redis"}
    assert set(services["worker"]["depends_on"]) == {"qdrant", "redis"}
    assert set(services["demo-seed"]["depends_on"]) == {"api", "worker"}  # it uploads, the worker indexes


def test_qdrant_and_redis_are_not_published_and_the_rest_only_on_this_machine_by_default() -> None:
    services = _services()
    assert "ports" not in services["qdrant"] and "ports" not in services["redis"]
    for name in ("api", "flower"):
        (published,) = services[name]["ports"]
        assert published.startswith("${") and ":-127.0.0.1}:" in published, (name, published)


def test_the_qdrant_image_matches_the_pinned_client() -> None:
    image = _services()["qdrant"]["image"]
    match = re.fullmatch(r"qdrant/qdrant:v(\d+)\.(\d+)\.\d+", image)
    assert match, image
    pinned = next(
        d
        for d in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("qdrant-client==")
    )
    installed = importlib.metadata.version("qdrant-client")
    assert pinned == f"qdrant-client=={installed}"
    # qdrant-client warns about a server whose major differs or whose minor is more than one apart.
    assert match.groups() == tuple(installed.split(".")[:2]), (image, installed)


def test_redis_keeps_its_data_across_restarts() -> None:
    redis = _services()["redis"]
    assert redis["command"][-2:] == ["--appendonly", "yes"]
    assert any(v.endswith(":/data") for v in redis["volumes"])


def _check_command(argv: list[str]) -> None:
    """A videoseek command line as a service runs it: the command exists and has every option given."""
    assert argv[0] == "videoseek", argv
    words = [w for w in argv[1:] if not w.startswith("-")]
    path = words[:2] if words and words[0] in ("models", "toy") else words[:1]
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, (argv, result.output)
    for option in (w.split("=", 1)[0] for w in argv[1:] if w.startswith("--")):
        assert option in result.output, (argv, option)


def test_each_videoseek_service_runs_a_command_the_cli_has_and_waits_on_a_real_check() -> None:
    services = _services()
    videoseek = {n: s for n, s in services.items() if _uses_videoseek_image(s)}
    assert set(videoseek) == {"api", "worker", "flower", "demo-seed"}
    for service in videoseek.values():
        _check_command([re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", w) for w in service["command"]])
    worker = services["worker"]
    ping = worker["healthcheck"]["test"][1:]
    _check_command(ping)
    assert "--ping" in ping
    # The ping names the worker's node, which is made of its queues: the same queues as the worker's command.
    assert ping[ping.index("--queues") + 1] == worker["command"][worker["command"].index("--queues") + 1]
    assert services["demo-seed"]["command"][:4] == ["videoseek", "demo", "--api", "http://api:8000"]
    for name in ("api", "flower"):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        compile(test[3], f"{name} healthcheck", "exec")
    qdrant = services["qdrant"]["healthcheck"]["test"]
    assert qdrant[:3] == ["CMD", "bash", "-c"] and "/readyz" in qdrant[3]
    script = qdrant[3].replace("$$", "$")  # compose's escape of a literal $
    assert subprocess.run(["bash", "-n", "-c", script], check=False).returncode == 0


def test_the_videoseek_settings_in_the_compose_and_env_files_exist() -> None:
    known = known_variables() | NON_SETTING_VARIABLES
    environments = [s.get("environment", {}) for s in _services().values()]
    named = {k for env in environments for k in env if k.startswith("VIDEOSEEK_")}
    named |= set(re.findall(r"^#?\s*(VIDEOSEEK_\w+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert named and named <= known, named - known
    gpu = yaml.safe_load(GPU_OVERRIDE.read_text())["services"]["worker"]
    assert gpu["environment"]["VIDEOSEEK_DEVICE"] == "cuda"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_every_variable_the_compose_files_read_is_in_env_example() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text() + GPU_OVERRIDE.read_text()))
    documented = set(re.findall(r"^#?\s*(\w+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert used <= documented, used - documented
    assert {"VIDEOSEEK_MODEL", "VIDEOSEEK_API_KEYS", "WORKER_GPUS"} <= documented  # model, keys, GPU count


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_runs_as_an_unprivileged_user_with_a_healthcheck() -> None:
    instructions = _instructions()
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (op, _) in enumerate(instructions) if op == "USER")
    assert all(op != "RUN" for op, _ in instructions[last_user:])  # nothing after it runs as root
    assert any(op == "HEALTHCHECK" and "/readyz" in arg for op, arg in instructions)
    assert any(op == "CMD" and '"videoseek", "serve"' in arg for op, arg in instructions)


def _copied() -> list[str]:
    sources = []
    for op, arg in _instructions():
        if op == "COPY":
            sources += shlex.split(arg)[:-1]
    return sources


def _excluded(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(prefix, bare) for prefix in prefixes):
            verdict = not negated
    return verdict


def test_the_build_context_holds_what_the_image_copies_and_no_venv_or_data() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    copied = _copied()
    assert set(copied) == {"pyproject.toml", "README.md", "videoseek", "service", "worker", "training"}
    for source in copied:
        assert not _excluded(source, patterns), source
    assert not _excluded("videoseek/toy/weights/toy-clip.safetensors", patterns)  # the shipped toy CLIP
    for kept_out in (".venv/lib/python3.11/site-packages/torch/lib/libtorch.so", "videoseek-data/qdrant/x",
                     "videoseek-demo/toy-videos/1.mp4", ".git/objects/pack/x", "videoseek/__pycache__/clip.pyc",
                     "tests/test_readme.py", ".env"):  # fmt: skip
        assert _excluded(kept_out, patterns), kept_out


def _pip_install_args() -> list[str]:
    (run,) = [arg for op, arg in _instructions() if op == "RUN" and "pip install" in arg]
    args = shlex.split(run)
    return args[args.index("install") + 1 :]


@pytest.mark.slow
def test_the_images_python_environment_builds_from_the_copied_files_and_runs(tmp_path: Path) -> None:
    """The Dockerfile's COPY lines and RUN line, replayed: a non-editable install of exactly those files."""
    context = tmp_path / "app"
    context.mkdir()
    for source in _copied():
        if (REPO_ROOT / source).is_dir():
            shutil.copytree(
                REPO_ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO_ROOT / source, context / source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", *_pip_install_args()]
    installed = subprocess.run(pip, cwd=context, capture_output=True, text=True, timeout=3000, check=False)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
        return subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
        )

    for command in (["--help"], ["flower", "--help"], ["worker", "--help"], ["demo", "--help"]):
        result = run(str(venv / "bin" / "videoseek"), *command)
        assert result.returncode == 0, (command, result.stderr)
    probe = run(
        str(venv / "bin" / "python"),
        "-c",
        "import json, flower, service, worker, training, videoseek;"
        "from pathlib import Path;"
        "from videoseek.toy.model import toy_checkpoint_path;"
        "from videoseek.toy.adapter import toy_adapter_dir;"
        "static = Path(service.__file__).parent / 'static';"
        "print(json.dumps({'site': videoseek.__file__, 'toy': toy_checkpoint_path().is_file(),"
        " 'adapter': toy_adapter_dir() is not None, 'page': (static / 'index.html').is_file()}))",
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert str(venv) in found["site"]  # the installed copy, not this checkout
    assert found["toy"] and found["adapter"] and found["page"], found  # package data the demo and page need
