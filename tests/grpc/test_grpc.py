"""The gRPC Open Inference Protocol service, driven by tritonclient.grpc as users drive it."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.support.servers import REPO, ServerProcess, free_port

from ..conftest import make_client

HOUSE_ROWS = [
    [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98],
    [0.0273, 0, 7.07, 0, 0.469, 6.421, 78.9, 4.9671, 2, 242, 17.8, 396.9, 9.14],
]
# model → (input name, datatype, values): two rows each, as a client would send them.
INPUTS: dict[str, tuple[str, str, np.ndarray]] = {
    "mnist": ("pixels", "FP32",
              np.random.default_rng(3).integers(0, 256, (2, 784)).astype(np.float32)),
    "housing": ("features", "FP32", np.asarray(HOUSE_ROWS, dtype=np.float32)),
    "imdb": ("text", "BYTES", np.array([b"A wonderful, moving film. Superb acting.",
                                        b"Dull, predictable and far too long."],
                                       dtype=object)),
    "reuters": ("text", "BYTES", np.array([b"Shr 45 cts vs 38 cts. Net 12.4 mln dlrs vs 10.1 mln",
                                           b"Crude oil prices rose as OPEC cut output"],
                                          dtype=object)),
}  # fmt: skip
OUTPUTS = {"mnist": "probabilities", "housing": "price", "imdb": "probability",
           "reuters": "probabilities"}  # fmt: skip
INFER = "/inference.GRPCInferenceService/ModelInfer"


def _input(model: str) -> triton.InferInput:
    name, datatype, values = INPUTS[model]
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)  # raw_input_contents, BYTES length-prefixed
    return tensor


def _typed_request(model: str, **fields: Any) -> service_pb2.ModelInferRequest:
    name, datatype, values = INPUTS[model]
    request = service_pb2.ModelInferRequest(model_name=model, **fields)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=list(values.shape))
    if datatype == "BYTES":
        tensor.contents.bytes_contents.extend(values.tolist())
    else:
        tensor.contents.fp32_contents.extend(values.reshape(-1).tolist())
    return request


def _rest_json(model: str) -> dict[str, Any]:
    name, datatype, values = INPUTS[model]
    data = [v.decode() for v in values] if datatype == "BYTES" else values.tolist()
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(values.shape),
                        "data": data}]}  # fmt: skip


@pytest.fixture(scope="module")
def grpc_client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _rest_infer(server: ServerProcess, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=10)


def _rest_binary(server: ServerProcess, path: str, name: str, datatype: str,
                 values: np.ndarray) -> httpx.Response:  # fmt: skip
    """The same tensor sent to REST V2 with the binary extension (NaN has no JSON form)."""
    if datatype == "BYTES":
        raw = b"".join(struct.pack("<I", len(v)) + v for v in values.reshape(-1))
    else:
        raw = values.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": list(values.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return httpx.post(f"{server.url}{path}", content=header + raw, timeout=10,
                      headers={"Inference-Header-Content-Length": str(len(header))})  # fmt: skip


def _error(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


# ------------------------------------------------------------------------ health and metadata


def test_server_rpcs_answer_as_rest_does(grpc_client, server):
    rest = httpx.get(f"{server.url}/v2", timeout=10).json()
    metadata = grpc_client.get_server_metadata()
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert (metadata.name, metadata.version, list(metadata.extensions)) == (
        rest["name"], rest["version"], rest["extensions"])  # fmt: skip


@pytest.mark.parametrize("model", list(INPUTS))
def test_model_ready_and_metadata_match_rest(grpc_client, server, model):
    rest = httpx.get(f"{server.url}/v2/models/{model}", timeout=10).json()
    metadata = grpc_client.get_model_metadata(model, as_json=True)
    assert grpc_client.is_model_ready(model)
    assert grpc_client.is_model_ready(model, model_version=rest["versions"][0])
    assert metadata["name"] == model and metadata["versions"] == rest["versions"]
    assert metadata["platform"] == rest["platform"]
    for kind in ("inputs", "outputs"):
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in metadata[kind]] \
            == [(t["name"], t["datatype"], t["shape"]) for t in rest[kind]]  # fmt: skip


# ------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("model", list(INPUTS))
def test_raw_and_typed_answers_equal_rest_v2(grpc_client, stub, server, model):
    rest = _rest_infer(server, model, _rest_json(model)).json()["outputs"][0]
    expected = np.asarray(rest["data"], dtype=np.float32).reshape(rest["shape"])

    raw = grpc_client.infer(model, [_input(model)], request_id="r1")
    typed = stub.ModelInfer(_typed_request(model, id="t1"))

    output = OUTPUTS[model]
    assert raw.get_response().raw_output_contents, "a raw request gets raw outputs"
    np.testing.assert_allclose(raw.as_numpy(output), expected, rtol=1e-6, atol=1e-7)
    assert raw.get_response().id == "r1" and typed.id == "t1"
    assert not typed.raw_output_contents, "a typed request gets typed outputs"
    (tensor,) = typed.outputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == (output, "FP32", rest["shape"])
    np.testing.assert_allclose(np.asarray(tensor.contents.fp32_contents).reshape(rest["shape"]),
                               expected, rtol=1e-6, atol=1e-7)  # fmt: skip


def test_requested_outputs_are_honoured_and_checked(grpc_client):
    asked = grpc_client.infer("housing", [_input("housing")],
                              outputs=[triton.InferRequestedOutput("price")])  # fmt: skip
    unknown = [triton.InferRequestedOutput("value")]
    wrong = _error(lambda: grpc_client.infer("housing", [_input("housing")], outputs=unknown))
    assert asked.as_numpy("price").shape == (2, 1)
    assert wrong.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output 'value'; housing gives 'price'" in wrong.message()


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("model", "version", "body", "code"),
    [
        ("nope", "", "housing", "NOT_FOUND"),
        ("housing", "7", "housing", "NOT_FOUND"),
        ("mnist", "", "mnist-700", "INVALID_ARGUMENT"),
        ("mnist", "", "imdb", "INVALID_ARGUMENT"),  # BYTES where FP32 pixels are expected
        ("housing", "", "housing-nan", "INVALID_ARGUMENT"),
    ],
)
def test_errors_get_grpc_codes_and_the_rest_message(grpc_client, server, model, version, body,
                                                    code):  # fmt: skip
    source = body.split("-")[0]
    name, datatype, values = INPUTS[source]
    if body == "mnist-700":
        values = values[:1, :700]
    if body == "housing-nan":
        values = values.copy()
        values[0, 5] = np.nan
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)
    path = f"/v2/models/{model}{f'/versions/{version}' if version else ''}/infer"
    rest = _rest_binary(server, path, name, datatype, values)

    error = _error(lambda: grpc_client.infer(model, [tensor], model_version=version))

    assert error.status() == f"StatusCode.{code}"
    assert error.message() == rest.json()["error"], "the same message as REST"


def test_grpc_requests_are_counted_like_rest_with_http_codes(grpc_client, server):
    def infer_count(code: str) -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        return sum(v for k, v in _samples(text, "dlwp_requests_total").items()
                   if ("route", INFER) in k and ("code", code) in k)  # fmt: skip

    before = infer_count("200"), infer_count("404")
    grpc_client.infer("housing", [_input("housing")])
    _error(lambda: grpc_client.infer("nope", [_input("housing")]))
    after = infer_count("200"), infer_count("404")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_bad_versions_and_raw_counts_are_invalid_argument(stub):
    request = _typed_request("housing", model_version="latest")
    raw = service_pb2.ModelInferRequest(model_name="housing", raw_input_contents=[b"", b""])
    raw.inputs.add(name="features", datatype="FP32", shape=[0, 13])
    for bad in (request, raw):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_port_held_by_another_server_fails_loudly_at_start(server):
    # grpcio binds with SO_REUSEPORT, which would let this second server share the port.
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(free_port()),
               "--grpc-port", str(server.grpc_port)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"gRPC port {server.grpc_port} on 127.0.0.1 is already in use" in result.stderr


# ------------------------------------------------- one core: shared batches, queue, workers


@pytest.fixture(scope="module")
def slow_batching() -> Iterator[tuple[Any, str]]:
    """An in-process app whose batcher waits 300 ms for batches to fill, gRPC on a free port; a
    full queue refuses at once (no admission wait)."""
    port = free_port()
    with make_client(grpc_port=port, batch_delay_ms=300, max_queue_rows=32,
                     admission_wait_s=0) as client:  # fmt: skip
        yield client, f"127.0.0.1:{port}"


def test_grpc_and_rest_requests_share_batches(slow_batching):
    client, target = slow_batching
    grpc_client = triton.InferenceServerClient(target)

    def batches() -> tuple[float, float]:
        text = client.get("/metrics").text
        key = (("model", "housing"),)
        return _samples(text, "dlwp_batch_size_count")[key], \
            _samples(text, "dlwp_batch_size_sum")[key]  # fmt: skip

    before = batches()
    row = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 13],
                       "data": HOUSE_ROWS[0]}]}  # fmt: skip
    one = triton.InferInput("features", [1, 13], "FP32")
    one.set_data_from_numpy(np.asarray(HOUSE_ROWS[:1], dtype=np.float32))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        rest = [pool.submit(client.post, "/v2/models/housing/infer", json=row) for _ in range(8)]
        grpc_ = [pool.submit(grpc_client.infer, "housing", [one]) for _ in range(8)]
        codes = [f.result().status_code for f in rest]
        prices = [float(f.result().as_numpy("price")[0, 0]) for f in grpc_]
    calls, rows = (a - b for a, b in zip(batches(), before, strict=True))
    grpc_client.close()

    assert codes == [200] * 8 and len(set(prices)) == 1
    assert rows == 16
    assert rows / calls > 8, "batches mixed REST and gRPC rows (more than either protocol sent)"


def test_a_call_gets_its_request_id_back_in_trailing_metadata(stub):
    request = _typed_request("housing")
    _, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "order-42"),))
    _, fresh = stub.ModelInfer.with_call(request)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"),
                        metadata=(("x-request-id", "order-43"),))  # fmt: skip

    assert ("x-request-id", "order-42") in call.trailing_metadata()
    assert len(dict(fresh.trailing_metadata())["x-request-id"]) == 32  # a new id, as REST
    assert ("x-request-id", "order-43") in caught.value.trailing_metadata()


def test_a_full_queue_is_unavailable_with_retry_after(slow_batching):
    client, target = slow_batching
    waiting = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [30, 13],
                           "data": HOUSE_ROWS * 15}]}  # fmt: skip
    rows = np.asarray(HOUSE_ROWS * 2, dtype=np.float32)  # 4 more rows: the queue holds 32
    with concurrent.futures.ThreadPoolExecutor(1) as pool, \
            grpc.insecure_channel(target) as channel:  # fmt: skip
        first = pool.submit(client.post, "/v2/models/housing/infer", json=waiting)
        time.sleep(0.1)  # queued: the batcher waits 300 ms for its batch to fill
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="housing")
        request.inputs.add(name="features", datatype="FP32", shape=list(rows.shape))
        request.raw_input_contents.append(rows.tobytes())
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        assert first.result().status_code == 200
    error = caught.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "the queue is full" in error.details()
    assert ("retry-after", "1") in error.trailing_metadata()


def test_every_worker_serves_grpc_on_the_shared_port():
    server = ServerProcess(workers=2, name="grpc-workers").wait_ready()
    try:
        # Ready answers as soon as one worker is; the other may still be loading its models.
        deadline = time.monotonic() + 60
        while _grpc_started(server) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        serving = _grpc_started(server)
        answers = []
        for _ in range(8):  # new connections: the kernel spreads them over both workers
            client = triton.InferenceServerClient(server.grpc_target)
            answers.append(client.infer("housing", [_input("housing")]).as_numpy("price"))
            client.close()
    finally:
        server.stop()
    assert serving == 2, "both workers bound the shared port"
    assert len(answers) == 8
    assert all(np.array_equal(a, answers[0]) for a in answers)


def _grpc_started(server: ServerProcess) -> int:
    return server.log_path.read_text().count("gRPC (Open Inference Protocol) serving")


def test_past_the_deadline_is_deadline_exceeded_with_the_rest_message():
    from service.errors import DeadlineExceededError
    from service.grpc.servicer import Call, _status

    call = Call(INFER, model="mnist")
    error = DeadlineExceededError("no answer within the request deadline of 10 s")
    assert _status(error, call) == (504, grpc.StatusCode.DEADLINE_EXCEEDED, error.message, ())


def test_committed_descriptors_match_the_proto(tmp_path):
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools (a dev dependency) compiles the .proto")
    from service.grpc.protocol import DESCRIPTORS, PROTO

    compiled = tmp_path / "inference.pb"
    # In its own process: protoc beside TensorFlow's protobuf in one process can crash.
    command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}",
               f"--descriptor_set_out={compiled}", str(PROTO)]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)
    assert compiled.read_bytes() == DESCRIPTORS.read_bytes(), "stale inference.pb: make proto"


def test_port_zero_turns_grpc_off():
    import asyncio

    from service.grpc import server as grpc_server
    from service.settings import Settings

    assert asyncio.run(grpc_server.start(None, Settings(grpc_port=0))) is None  # type: ignore[arg-type]
