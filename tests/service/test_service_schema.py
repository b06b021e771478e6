"""Property-based run of every operation in the OpenAPI schema (schemathesis): no input may cause a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import runtime_for, seed_clips, settings_for, start_client

from service.main import create_app
from videoseek.settings import load_settings

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, settings  # noqa: E402 - only after the skip check
from schemathesis.checks import not_a_server_error  # noqa: E402

ADMIN = {"Authorization": "Bearer fuzz-admin"}


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app requiring keys (so generated requests get past auth with ours), with one seeded collection."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    keys = [{"key": "fuzz-admin", "scopes": ["admin"]}]
    with ExitStack() as stack:
        client = start_client(stack, settings_for(data_dir, api_keys=keys), client=("198.51.100.7", 1234))
        assert client.post("/collections", json={"name": "shapes"}, headers=ADMIN).status_code == 201
        seed_clips(client, "shapes")
        yield client


def send(client: TestClient, kwargs: dict[str, Any]) -> Any:
    """Issue a requests-style call (what schemathesis serialises) through the httpx TestClient."""
    body = kwargs.get("data")
    client.cookies.clear()
    client.cookies.update(kwargs.get("cookies") or {})
    return client.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        json=kwargs.get("json"),
        content=body if isinstance(body, bytes | str) else None,
        data=body if isinstance(body, dict) else None,
        files=_files(kwargs.get("files")),
    )


def _files(files: Any) -> Any:
    """requests accepts any value in a multipart part; httpx wants bytes or str."""
    if not files:
        return None
    out = []
    for name, value in files.items() if isinstance(files, dict) else files:
        filename, content, *rest = value if isinstance(value, tuple) else (None, value)
        if not isinstance(content, bytes | str):
            content = str(content)
        out.append((name, (filename, content, *rest)))
    return out


# Building the OpenAPI document opens nothing (no lifespan), so the schema can be loaded at collection time.
schema = schemathesis.openapi.from_dict(
    create_app(runtime_for(load_settings(data_dir="unused", api_keys=[]))).openapi()
)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_input_causes_a_server_error(case: Any, fuzz_client: TestClient) -> None:
    response = send(fuzz_client, case.as_transport_kwargs(base_url="http://testserver", headers=ADMIN))
    response.request.read()  # multipart bodies are streams: schemathesis wants the request bytes in hand
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:  # every refusal says why, as JSON
        assert response.headers.get("content-type", "").startswith("application/json"), response.text
        assert response.json().get("reason"), response.text
