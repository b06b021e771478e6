"""Property-based run of every operation in the OpenAPI schema (schemathesis): no input may cause a 5xx, and
every answer is one the schema declares (status, content type, body); and what the schema must declare.

A longer run against a live server: ``schemathesis run`` as README's "Fuzzing the API" section shows.
"""

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
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.schemas import JOB_ID_RE, PAIR_ID_RE, TASK_ID_RE  # noqa: E402
from videoseek.layout import COLLECTION_NAME_RE, VIDEO_ID_RE  # noqa: E402

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
OPENAPI = create_app(runtime_for(load_settings(data_dir="unused", api_keys=[]))).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_input_causes_a_server_error(case: Any, fuzz_client: TestClient) -> None:
    check_answer(fuzz_client, case, ADMIN)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=150,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_input_with_or_without_a_key_causes_a_server_error(case: Any, fuzz_client: TestClient) -> None:
    for headers in (ADMIN, {}):
        check_answer(fuzz_client, case, headers)


def check_answer(client: TestClient, case: Any, headers: dict[str, str]) -> None:
    """No 5xx; the status, content type and body the schema declares; every refusal says why, as JSON."""
    response = send(client, case.as_transport_kwargs(base_url="http://testserver", headers=headers))
    response.request.read()  # multipart bodies are streams: schemathesis wants the request bytes in hand
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type", "").startswith("application/json"), response.text
        assert response.json().get("reason"), response.text


PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics"}
PATTERNS = {
    "name": COLLECTION_NAME_RE.pattern,
    "video_id": VIDEO_ID_RE.pattern,
    "task_id": TASK_ID_RE.pattern,
    "job_id": JOB_ID_RE.pattern,
    "pair_id": PAIR_ID_RE.pattern,
}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in OPENAPI["paths"].items() for method, op in ops.items()]


@pytest.mark.parametrize(("path", "method", "operation"), operations())
def test_every_operation_declares_the_errors_it_can_give_with_the_error_body(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    declared = {int(status) for status in operation["responses"] if status.isdigit()}
    must = {503} if path in PUBLIC_PATHS else {401, 403, 422, 503}  # keys, rules, not ready
    if "{name}" in path or "{video_id}" in path or "{task_id}" in path or "{job_id}" in path:
        must.add(404)
    if "requestBody" in operation and "application/json" in operation["requestBody"]["content"]:
        must.add(400)  # a body that is not JSON
    assert must <= declared, (method, path, sorted(declared))
    for status in declared - {200, 201, 202, 206}:
        content = operation["responses"][str(status)]["content"]["application/json"]
        if path != "/readyz":  # its 503 is the readiness report itself
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)


@pytest.mark.parametrize(("path", "method", "operation"), operations())
def test_path_parameters_carry_the_pattern_the_api_checks(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] in PATTERNS:
            assert parameter["schema"]["pattern"] == PATTERNS[parameter["name"]], (method, path, parameter)


def test_request_bodies_carry_name_and_video_id_patterns() -> None:
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["CreateCollectionRequest"]["properties"]["name"]["pattern"] == COLLECTION_NAME_RE.pattern
    assert schemas["SearchRequest"]["properties"]["collection"]["pattern"] == COLLECTION_NAME_RE.pattern
    video_ids = schemas["SearchFilters"]["properties"]["video_ids"]["anyOf"][0]["items"]
    assert video_ids["pattern"] == VIDEO_ID_RE.pattern


def test_the_training_pair_bodies_carry_examples_and_the_upload_form_names_its_pair_fields() -> None:
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["AddCaptionsRequest"]["examples"][0]["captions"][0]["text"]
    assert schemas["FeedbackRequest"]["examples"][0]["relevant"] is True
    assert schemas["FeedbackRequest"]["properties"]["clip_id"]["pattern"] == PAIR_ID_RE.pattern
    upload = OPENAPI["paths"]["/collections/{name}/videos"]["post"]["requestBody"]["content"]
    form = upload["multipart/form-data"]["schema"]["properties"]
    assert {"file", "metadata", "captions", "subtitles"} <= set(form)
