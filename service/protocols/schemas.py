"""Request and response shapes of the task endpoints, for validation and for OpenAPI (`/docs`).

Only the small envelopes go through pydantic; tensors (pixel arrays, feature values) are
checked by numpy in `service.model.preprocessing`, which is both faster and gives better messages.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from service.errors import BadRequestError, DlwpError, InvalidInputError

_REVIEW = "A moving, beautifully acted film. One of the best I have seen this year."
_WIRE = (
    "Shr 45 cts vs 38 cts. Net 12.4 mln dlrs vs 10.1 mln. Revs 210 mln vs 190 mln. "
    "Company said it expects continued growth in earnings."
)
_HOUSE: Any = {
    "CRIM": 0.0063, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575,
    "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9, "LSTAT": 4.98,
}  # fmt: skip
# A handwritten-style "1": a vertical bar of ink in the middle of a 28×28 grid.
_ONE: Any = [
    [255 if 12 <= col < 16 and 4 <= row < 24 else 0 for col in range(28)] for row in range(28)
]


_EXPLAIN_TEXT = (
    "Add `explanation` to each prediction: every distinct in-vocabulary word with its weight "
    "(score as sent − score with every occurrence of the word removed), ordered by |weight|. "
    "Costs one model row per distinct word (capped: over the cap, 422)."
)


class _OneOrMany(BaseModel):
    """Exactly one of the single-item field and the list field must be given."""

    model_config = ConfigDict(extra="forbid")
    single_field: ClassVar[str]
    many_field: ClassVar[str]

    @model_validator(mode="after")
    def _exactly_one(self) -> _OneOrMany:
        given = [
            name for name in (self.single_field, self.many_field) if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {self.single_field!r} or {self.many_field!r}")
        return self

    def items(self) -> list[Any]:
        single = getattr(self, self.single_field)
        return [single] if single is not None else list(getattr(self, self.many_field))


class TextRequest(_OneOrMany):
    single_field = "text"
    many_field = "texts"
    text: str | None = Field(None, description="One text.")
    texts: list[str] | None = Field(None, description="Several texts, answered in order.")


class SentimentRequest(TextRequest):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": _REVIEW}, {"text": _REVIEW, "explain": True}]}
    )
    explain: bool = Field(False, description=_EXPLAIN_TEXT)


class TopicsRequest(TextRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"text": _WIRE, "top_k": 3}, {"text": _WIRE, "top_k": 3, "explain": True}]
        }
    )
    top_k: int = Field(3, ge=1, le=46, description="How many topics to return per text.")
    explain: bool = Field(False, description=_EXPLAIN_TEXT)


class DigitsRequest(_OneOrMany):
    model_config = ConfigDict(json_schema_extra={"examples": [{"pixels": _ONE}]})
    single_field = "pixels"
    many_field = "images"
    pixels: list[Any] | None = Field(
        None, description="One digit: 28×28 nested or 784 flat grey values, 0 (paper) to 255 (ink)."
    )
    images: list[list[Any]] | None = Field(None, description="Several digits, as `pixels` each.")


class HousingRequest(_OneOrMany):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"features": _HOUSE}, {"features": _HOUSE, "explain": True}]
        }
    )
    single_field = "features"
    many_field = "instances"
    features: dict[str, Any] | None = Field(
        None, description="The 13 Boston housing features by name (CRIM … LSTAT)."
    )
    instances: list[dict[str, Any]] | None = Field(None, description="Several houses.")
    explain: bool = Field(
        False,
        description="Add `explanation` to each prediction: for each feature, the price as sent "
        "minus the price with that feature at its training mean, ordered by |weight|.",
    )


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong and what is accepted.")


class _Envelope(BaseModel):
    model: str
    version: int


class SentimentResponse(_Envelope):
    predictions: list[dict[str, Any]] = Field(
        examples=[
            [{"label": "positive", "score": 0.97}],
            [
                {
                    "label": "positive",
                    "score": 0.97,
                    "explanation": [{"word": "best", "weight": 0.12}],
                }
            ],
        ],
        description="One per text: label (positive when score ≥ 0.5) and score, P(positive); "
        "with `explain`, also `explanation`.",
    )


class TopicsResponse(_Envelope):
    predictions: list[dict[str, Any]] = Field(
        examples=[[{"topics": [{"label": "earn", "index": 3, "probability": 0.91}]}]],
        description="One per text: the top_k topics, most probable first; with `explain`, also "
        "`explanation` (weights for the top topic's probability).",
    )


class DigitsResponse(_Envelope):
    predictions: list[dict[str, Any]] = Field(
        examples=[[{"digit": 7, "probabilities": [0.0] * 7 + [1.0] + [0.0] * 2}]],
        description="One per image: the digit and the 10 class probabilities.",
    )


class HousingResponse(_Envelope):
    predictions: list[dict[str, Any]] = Field(
        examples=[
            [{"price": 21.3}],
            [{"price": 21.3, "explanation": [{"feature": "RM", "weight": 3.1}]}],
        ],
        description="One per house: median value in $1000s; with `explain`, also `explanation`.",
    )


Body = TypeVar("Body", bound=BaseModel)


def parse(model: type[Body], body: Any, error: type[DlwpError] = InvalidInputError) -> Body:
    """Validate a parsed JSON body, turning pydantic's errors into one readable message."""
    if not isinstance(body, dict):
        raise error(f"expected a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as problems:
        message = describe(problems)
        if any(len(item["loc"]) <= 1 for item in problems.errors()):
            message += f" (accepted fields: {', '.join(model.model_fields)})"
        raise error(message) from None


# ------------------------------------------------------------------ shared by every route

ERROR_DESCRIPTIONS = {
    400: "Malformed request: not JSON, or a field of the wrong type or shape",
    401: "The API key is missing or wrong (only when DLWP_API_KEY is set)",
    403: "Refused: a request a web page on another site could send (a Content-Type other "
    "than application/json, or another site's Origin), or control is off (listening beyond "
    "loopback with no DLWP_API_KEY)",
    404: "Unknown model or version",
    413: "The body is over DLWP_MAX_BODY_BYTES",
    409: "Conflicts with what is going on (a rollout is, or is not, running)",
    415: "Unsupported content type",
    422: "The input cannot be a model input (wrong tensor shape, values out of range, …)",
    503: "The model's queue is full or the model is not loaded yet (see Retry-After)",
    504: "Past the request deadline",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the `{"error": ...}` answers a route can give."""
    return {
        code: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[code]} for code in codes
    }


MODEL_NAME = "A served model: mnist, imdb, reuters or housing."
MODEL_VERSION = "A version of the model (an integer)."


def path_parameters(*names: str) -> list[dict[str, Any]]:
    """The path parameters declared for the `@hot` routes, whose endpoints take only the request
    (`service.rest.deps.path_version` checks a version as `deps.ModelVersion` does for the routes
    FastAPI dispatches)."""
    schemas = {
        "name": ({"type": "string", "examples": ["mnist"]}, MODEL_NAME),
        "version": ({"type": "integer", "minimum": 0, "examples": [1]}, MODEL_VERSION),
    }
    return [
        {"name": name, "in": "path", "required": True, "description": schemas[name][1],
         "schema": schemas[name][0]}
        for name in names
    ]  # fmt: skip


def link(operation_id: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: where a response's values can be used next (clients, stateful tests)."""
    return {"operationId": operation_id, "parameters": parameters}


def inline(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` inlined, to embed in an OpenAPI operation (whose
    `$ref`s resolve against the whole document, not the embedded schema)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def with_error_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document without FastAPI's generated 422 `{"detail": [...]}` answers: this
    server answers a request FastAPI itself rejects with 400 and `{"error": ...}` (declared on
    each route), so those entries would promise a body it never sends."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
    components = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return document


def describe(error: ValidationError, limit: int = 3) -> str:
    """pydantic's errors as one line a user can act on: where, what, and what was sent."""
    problems = []
    for item in error.errors(include_url=False)[:limit]:
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] not in ("missing", "value_error", "model_type", "model_attributes_type"):
            sent = repr(item["input"])
            message += f" (got {sent[:40] + '…' if len(sent) > 40 else sent})"
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


# ------------------------------------------------------- Open Inference Protocol (KServe V2)

# The V2 request envelope is checked here, every field by type, before any tensor is built;
# tensor *contents* stay on numpy's path (`tensors.py`), which checks them per datatype
# without a Python object per element.
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


def _primitive(value: Any) -> Any:
    if isinstance(value, str | int | float):  # bool is an int
        return value
    raise ValueError(f"a parameter is a string, number or boolean, got {type(value).__name__}")


def _array(value: Any) -> Any:
    if isinstance(value, list):
        return value
    raise ValueError(f"tensor data is a (nested) JSON array, got {type(value).__name__}")


# V2 `$parameters` values: string, number or boolean.
ParameterValue = Annotated[
    Any,
    PlainValidator(_primitive),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}),
]
# Tensor contents: passed through untouched (no per-element validation here: numpy does it).
TensorData = Annotated[
    list[Any],
    PlainValidator(_array),
    WithJsonSchema(
        {
            "type": "array",
            "description": "Row-major, flat or nested as the shape; numbers, booleans (BOOL) "
            "or strings (BYTES).",
            "items": {"type": ["number", "boolean", "string", "array"]},
        }
    ),
]
NonNegative = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Parameters(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    __pydantic_extra__: dict[str, ParameterValue]  # type: ignore[assignment]


class InputParameters(_Parameters):
    binary_data_size: NonNegative | None = Field(
        None, description="Binary extension: this input's bytes after the JSON header."
    )


class OutputParameters(_Parameters):
    binary_data: bool | None = Field(None, description="Answer this output as raw bytes.")


class RequestParameters(_Parameters):
    binary_data_output: bool | None = Field(None, description="Answer every output as bytes.")


class RequestInput(_Strict):
    name: str
    shape: list[NonNegative]
    datatype: Datatype
    parameters: InputParameters | None = None
    data: TensorData | None = Field(
        None, description="Required unless parameters.binary_data_size is given."
    )


class RequestOutput(_Strict):
    name: str
    parameters: OutputParameters | None = None


class InferenceRequest(_Strict):
    """A V2 inference request (the JSON part, before any binary tensor data)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 13],
                             "data": [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296,
                                      15.3, 396.9, 4.98]}]}
            ]
        }
    )  # fmt: skip
    id: str | None = None
    model_name: str | None = Field(
        None,
        description="Optional (KServe's Python client sends it): must be the model in the path.",
    )
    parameters: RequestParameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None

    def check_model(self, path_name: str) -> None:
        """A `model_name` in the body that disagrees with the path is a 400 (not a guess)."""
        if self.model_name is not None and self.model_name != path_name:
            raise BadRequestError(
                f"model_name {self.model_name!r} in the body disagrees with the path's "
                f"model {path_name!r}"
            )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, ParameterValue] | None = None
    data: list[Any] | None = Field(None, description="Absent when sent as binary data.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, ParameterValue] | None = None
    outputs: list[ResponseOutput]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 for a dimension of any size.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class ModelReady(BaseModel):
    name: str
    version: str
    ready: bool


# ------------------------------------------------------------------------ TF Serving REST


def _one_of_instances_or_inputs(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [{"required": ["instances"]}, {"required": ["inputs"]}]


def _array_or_object(value: Any) -> Any:
    if isinstance(value, list | dict):
        return value
    raise ValueError(f"'inputs' is a tensor or {{name: tensor}}, got {type(value).__name__}")


ColumnarInputs = Annotated[
    list[Any] | dict[str, Any],
    PlainValidator(_array_or_object),
    WithJsonSchema({"anyOf": [{"type": "array"}, {"type": "object"}]}),
]


class PredictRequest(_Strict):
    """`instances` (row format) or `inputs` (columnar format), exactly one."""

    model_config = ConfigDict(json_schema_extra=_one_of_instances_or_inputs)
    signature_name: Literal["serving_default"] | None = None
    instances: TensorData | None = Field(None, description="One entry per input row.")
    inputs: ColumnarInputs | None = Field(
        None, description="The input tensor, or {input name: tensor}."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        if (self.instances is None) == (self.inputs is None):
            raise ValueError("give either 'instances' or 'inputs' (exactly one of them)")
        return self


class PredictResponse(BaseModel):
    predictions: list[Any] | None = Field(None, description="Row format: one per instance.")
    outputs: list[Any] | None = Field(None, description="Columnar format.")


class VersionStatus(BaseModel):
    version: str
    state: Literal["AVAILABLE", "END"]
    status: dict[str, str]


class ModelStatus(BaseModel):
    name: str
    ready: bool = Field(description="Whether a version is AVAILABLE (KServe's V1 protocol).")
    model_version_status: list[VersionStatus]


# ------------------------------------------------------------------------- repository


class IndexEntry(BaseModel):
    name: str
    version: str
    state: str = Field(description="READY, LOADING, UNAVAILABLE or FAILED")
    reason: str | None = Field(None, description="Why a version is not READY.")


class RepositoryAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    state: str
    version: str | None = None


class RolloutRequest(BaseModel):
    """Start a rollout: `version` beside the serving one (see docs/rollouts.md)."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=0, description="The candidate version (on disk; loaded if need be).")
    mode: Literal["shadow", "canary"] = Field(
        "shadow",
        description="shadow: the candidate also computes a share of requests, the serving "
        "version answers all; canary: the candidate answers a share.",
    )
    share: float | None = Field(
        None, gt=0, le=1, description="Share of requests (default 1.0 shadow, 0.1 canary)."
    )
    gate: dict[str, float] | None = Field(
        None, description='Gate thresholds to override, e.g. {"min_compared": 300}.'
    )


class RolloutStatus(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    id: str
    state: Literal["running", "promoted", "rolled_back", "aborted"]
    reason: str
    mode: str
    share: float
    serving_version: int
    candidate_version: int
    agreement: float | None = Field(None, description="Share of compared predictions agreeing.")
    compared: int | None = None
