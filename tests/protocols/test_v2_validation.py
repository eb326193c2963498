"""Every field of a V2 inference request is checked by type and shape: a wrong one is a 400/422
with a clear {"error"}, never a 500 and never a silent conversion."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HOUSE = [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98]
VALID: dict[str, Any] = {
    "id": "r1",
    "parameters": {"binary_data_output": False, "trace": "on"},
    "inputs": [
        {
            "name": "features",
            "datatype": "FP32",
            "shape": [1, 13],
            "parameters": {"note": 1},
            "data": HOUSE,
        }
    ],
    "outputs": [{"name": "price", "parameters": {"binary_data": False}}],
}
INFER = "/v2/models/housing/infer"

# Each field of the request, with the JSON types it accepts; null stands for an absent optional
# field (as the OpenAPI schema says).
NONE = type(None)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3), children, max_size=2),
    max_leaves=6,
)  # fmt: skip
FIELDS: dict[tuple[Any, ...], tuple[type, ...]] = {
    ("id",): (str, NONE),
    ("parameters",): (dict, NONE),
    ("parameters", "binary_data_output"): (bool, NONE),
    ("parameters", "trace"): (str, int, float, bool),
    ("inputs",): (list,),
    ("inputs", 0): (dict,),
    ("inputs", 0, "name"): (str,),
    ("inputs", 0, "datatype"): (str,),
    ("inputs", 0, "shape"): (list,),
    ("inputs", 0, "shape", 1): (int,),
    ("inputs", 0, "parameters"): (dict, NONE),
    ("inputs", 0, "parameters", "note"): (str, int, float, bool),
    ("inputs", 0, "data"): (list, NONE),
    ("inputs", 0, "data", 5): (int, float),
    ("outputs",): (list, NONE),
    ("outputs", 0): (dict,),
    ("outputs", 0, "name"): (str,),
    ("outputs", 0, "parameters"): (dict, NONE),
    ("outputs", 0, "parameters", "binary_data"): (bool, NONE),
}


def _with(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    node: Any = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def _wrong_type(accepted: tuple[type, ...], value: Any) -> bool:
    if isinstance(value, bool):  # JSON true is not a number (nor a shape dimension)
        return bool not in accepted
    return not isinstance(value, accepted)


@st.composite
def one_wrong_field(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    path = draw(st.sampled_from(sorted(FIELDS, key=str)))
    value = draw(ANY_JSON.filter(lambda v: _wrong_type(FIELDS[path], v)))
    return path, _with(VALID, path, value)


def test_the_valid_request_is_answered(client):
    response = client.post(INFER, json=VALID)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == "r1"
    assert response.json()["outputs"][0]["shape"] == [1, 1]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(one_wrong_field())
def test_a_wrong_type_in_any_field_is_a_4xx_naming_it(client, case):
    path, body = case

    response = client.post(INFER, content=json.dumps(body))  # stdlib: any size of integer

    assert response.status_code in (400, 422), (path, body, response.text)
    error = response.json()["error"]
    assert isinstance(error, str) and error
    if response.status_code == 400:  # the envelope: the message says which field
        assert ".".join(str(part) for part in path[:2]) in error, (path, error)


def _input(**changes: Any) -> dict[str, Any]:
    return {"inputs": [{**VALID["inputs"][0], **changes}]}


CASES = [
    # (body or raw bytes, extra headers, status, words in the message)
    (
        _input(datatype="FP64", data=[str(v) for v in HOUSE]),
        {},
        422,
        "FP64 values (finite numbers)",
    ),
    (_input(datatype="INT32", data=[1.5] * 13), {}, 422, "INT32 values (integers in"),
    (_input(datatype="UINT8", data=[300] * 13), {}, 422, "UINT8 values (integers in [0, 255])"),
    (
        _input(datatype="UINT64", data=[2**64 - 1, -1] + [0] * 11),
        {},
        422,
        "UINT64 values (integers in [0,",
    ),
    (_input(datatype="FP16", data=[1e6] * 13), {}, 422, "FP16 values (finite numbers)"),
    (_input(datatype="BOOL", data=[1] * 13), {}, 422, "BOOL values (true/false)"),
    (_input(datatype="FP32", data=[True] * 13), {}, 422, "FP32 values (finite numbers)"),
    (_input(data=[HOUSE[:6], HOUSE[6:]]), {}, 422, "FP32 values"),  # ragged
    (_input(data=[[v] for v in HOUSE[:12]] + [[1, 2]]), {}, 422, "FP32 values"),
    (_input(data=HOUSE[:12]), {}, 422, "needs 13 values, got 12"),
    (_input(data=5), {}, 400, "inputs.0.data: tensor data is a (nested) JSON array"),
    (_input(data=None), {}, 400, "has no 'data'"),
    (_input(shape=[1, -13]), {}, 400, "inputs.0.shape.1"),
    (_input(shape=[1, 13.0]), {}, 400, "inputs.0.shape.1"),
    (_input(shape="1,13"), {}, 400, "inputs.0.shape"),
    (_input(datatype="fp32"), {}, 400, "inputs.0.datatype"),
    (_input(dtype="FP32"), {}, 400, "inputs.0.dtype: Extra inputs are not permitted"),
    (_input(parameters={"binary_data_size": "52"}), {}, 400, "binary_data_size"),
    (_input(parameters={"binary_data_size": -1}), {}, 400, "binary_data_size"),
    (_input(parameters={"binary_data_size": 52}), {}, 400, "runs past"),
    (_input(parameters={"x": [1]}), {}, 400, "inputs.0.parameters.x: a parameter is a string"),
    ({**VALID, "parameters": {"binary_data_output": "yes"}}, {}, 400, "binary_data_output"),
    ({**VALID, "parameters": {"nested": {"a": 1}}}, {}, 400, "parameters.nested"),
    (
        {**VALID, "outputs": [{"name": "price", "parameters": {"binary_data": 1}}]},
        {},
        400,
        "outputs.0.parameters.binary_data",
    ),
    ({**VALID, "outputs": [{"name": "nope"}]}, {}, 422, "unknown output 'nope'"),
    ({**VALID, "id": 7}, {}, 400, "id: Input should be a valid string"),
    ({"inputs": VALID["inputs"] * 2}, {}, 400, "given twice"),
    (
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [5]}]},
        {},
        422,
        "BYTES data must be strings",
    ),
    (b'{"inputs": []}', {"inference-header-content-length": b"\xb2"}, 400, "Header-Content"),
    (
        orjson.dumps(VALID) + b"\0\0\0\0",
        {"inference-header-content-length": "10"},
        400,
        "malformed JSON",
    ),
]


@pytest.mark.parametrize(("body", "headers", "status", "words"), CASES,
                         ids=[f"{c[2]}-{c[3][:30]}" for c in CASES])  # fmt: skip
def test_a_wrong_field_gets_a_clear_error(client, body, headers, status, words):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    model = "imdb" if b'"BYTES"' in content else "housing"

    response = client.post(f"/v2/models/{model}/infer", content=content, headers=headers)

    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_binary_inputs_must_add_up_to_the_binary_part(client):
    header = orjson.dumps(_input(data=None, parameters={"binary_data_size": 52}))
    body = header + b"\0" * 56  # 13 float32 are 52 bytes; 4 left over

    length = {"inference-header-content-length": str(len(header))}
    response = client.post(INFER, content=body, headers=length)

    assert response.status_code == 400
    assert "add up to 52" in response.json()["error"]


def test_an_output_asking_for_json_overrides_the_request_wide_binary_default(client):
    body = {**VALID, "parameters": {"binary_data_output": True}}

    response = client.post(INFER, json=body)

    assert response.status_code == 200
    assert response.json()["outputs"][0]["name"] == "price"  # JSON, as the output asked


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/models/housing:predict", {"instances": [HOUSE], "signature_name": "x"}, 400,
         "signature_name"),
        ("/v1/models/housing:predict", {"instances": {"a": 1}}, 400, "instances"),
        ("/v1/models/housing:predict", {"inputs": 5}, 400, "inputs"),
        ("/v1/models/housing:predict", {"instances": [HOUSE], "extra": 1}, 400, "extra"),
        ("/v1/models/housing/versions/\u00b2:predict", {"instances": [HOUSE]}, 400, "version"),
        ("/v2/models/housing/versions/\u00b9/infer", VALID, 400, "version"),
    ],
)  # fmt: skip
def test_tf_serving_and_path_mistakes_get_a_clear_error(client, path, body, status, words):
    response = client.post(path, json=body)

    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_tf_serving_predict_with_its_signature_name_answers(client):
    body = {"signature_name": "serving_default", "instances": [HOUSE]}

    response = client.post("/v1/models/housing:predict", json=body)

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1
