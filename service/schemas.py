"""Request and response shapes of the task endpoints, for validation and for OpenAPI (`/docs`).

Only the small envelopes go through pydantic; tensors (pixel arrays, feature values) are
checked by numpy in `service.preprocessing`, which is both faster and gives better messages.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.errors import InvalidInputError

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


def parse(model: type[_OneOrMany], body: Any) -> Any:
    """Validate a parsed JSON body, turning pydantic's errors into one readable message."""
    if not isinstance(body, dict):
        raise InvalidInputError(f"expected a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problems = []
        for item in error.errors()[:3]:
            where = ".".join(str(part) for part in item["loc"])
            problems.append(f"{where}: {item['msg']}" if where else item["msg"])
        fields = ", ".join(name for name in model.model_fields)
        raise InvalidInputError(f"{'; '.join(problems)} (accepted fields: {fields})") from None
