"""The OpenAPI document is a contract the server keeps: every route, parameter and body declared
as it is validated, checked by schemathesis against real servers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import ServerProcess

from ..conftest import COMMITTED_MODELS

# Every phase; checks: all but `positive_data_acceptance`, which would need every schema-valid
# tensor to fit some model (a [1, 5] FP32 tensor is a valid V2 request, and a 422 for mnist).
STATE_CHANGING = ("repository_load", "repository_unload")


def schemathesis(url: str, workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`st run` on the live server's /openapi.json, bounded, reproducible, no cache in the repo."""
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (a dev dependency)")
    command = [str(st), "run", f"{url}/openapi.json", "--phases",
               "examples,coverage,fuzzing,stateful", "--exclude-checks",
               "positive_data_acceptance", "--max-examples", "8", "--seed", "8",
               "--generation-database", "none", "--max-failures", "20", "--no-color",
               "--request-timeout", "20", *options]  # fmt: skip
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)


def _failed(result: subprocess.CompletedProcess[str]) -> str:
    return f"schemathesis failed (exit {result.returncode}):\n{result.stdout[-6000:]}"


def test_schemathesis_finds_no_server_error_and_no_schema_error(server, tmp_path):
    excluded = [option for name in STATE_CHANGING for option in ("--exclude-operation-id", name)]
    result = schemathesis(server.url, tmp_path, *excluded)

    assert result.returncode == 0, _failed(result)
    assert "Schema Error" not in result.stdout
    # Links are followed: the stateful phase chains the index, metadata and inference.
    covered = re.search(r"API Links:\s+(\d+) covered", result.stdout)
    assert covered and int(covered.group(1)) > 0, result.stdout[-3000:]


def test_schemathesis_on_repository_load_and_unload(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(COMMITTED_MODELS, models)
    own = ServerProcess({"DLWP_MODELS_DIR": str(models)}, name="contract").wait_ready()
    try:
        result = schemathesis(own.url, tmp_path, "--include-tag", "model repository")
    finally:
        own.stop()

    assert result.returncode == 0, _failed(result)


def test_openapi_declares_every_path_parameter_and_error_body(client):
    document = client.get("/openapi.json").json()

    for path, operations in document["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, where
            for code, answer in operation["responses"].items():
                if code.startswith("4") or code.startswith("5"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, where
    assert "HTTPValidationError" not in str(document)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v2/models/{name}/infer", "InferenceRequest"),
        ("post", "/v1/models/{name}:predict", "PredictRequest"),
        ("post", "/v1/sentiment", "SentimentRequest"),
    ],
)
def test_openapi_bodies_are_the_models_the_server_validates_with(client, method, path, body):
    from service.protocols import schemas

    operation = client.get("/openapi.json").json()["paths"][path][method]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]

    assert schema["title"] == body
    assert set(schema["properties"]) == set(getattr(schemas, body).model_fields)
    assert "$defs" not in str(schema)  # inlined: an embedded `$ref` would not resolve
