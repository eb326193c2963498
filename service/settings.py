"""Every server setting, in one class; each can be set as an env var with the `DLWP_` prefix."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.model.artifacts import BUNDLED_MODELS_DIR
from service.model.runtime import Batching, device_batching


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DLWP_", frozen=True)

    models_dir: Path = Field(BUNDLED_MODELS_DIR, description="The model repository to serve.")
    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, description="Server processes; metrics add up across them.")

    max_batch_size: int = Field(
        128, ge=1, le=4096, description="Most rows one model call takes (rows, not requests)."
    )
    max_queue_rows: int = Field(
        1024, ge=1, description="Rows that may wait per model; past this, 503 with Retry-After."
    )
    batch_delay_ms: float = Field(
        0.0,
        ge=0,
        description="Extra wait for a batch to fill while the model is idle (0: never wait).",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, description="A request still unanswered after this gets 504."
    )

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    max_items: int = Field(
        1024, ge=1, description="Most inputs (texts, images, rows) one request may carry."
    )
    max_text_chars: int = Field(100_000, ge=1, description="Longest text accepted, in characters.")
    max_image_pixels: int = Field(
        16_000_000, ge=784, description="Largest decoded image accepted (width × height)."
    )

    poll_seconds: float = Field(
        5.0, ge=0, description="How often to look for new versions on disk (0: never)."
    )
    model_versions: str = Field(
        "", description='Pinned versions, e.g. "imdb=2,mnist=1"; others serve their latest.'
    )
    api_key: str | None = Field(
        None,
        description="When set, repository control (load, unload, rollouts) needs "
        "'Authorization: Bearer <key>'. Unset, control is off unless the server listens on "
        "loopback only (see docs/security.md).",
    )

    compute_threads: int = Field(
        1, ge=1, description="Threads each model call may use (TF intra-op parallelism)."
    )
    backend: str = Field("tensorflow", description="Model runtime: tensorflow or jax.")
    log_level: str = Field("info", description="debug, info, warning or error.")

    # explanations (issue 10)
    max_explain_rows: int = Field(
        512,
        ge=1,
        description="Most model rows one explanation request may cost (a row per input and per "
        "distinct word or feature); over it, 422.",
    )

    # gRPC (issue 12)
    grpc_port: int = Field(
        8001, ge=0, le=65535,
        description="Port of the gRPC Open Inference Protocol service (0: no gRPC).",
    )  # fmt: skip

    # Several workers and replicas: shared desired state, graceful drain (issue 8)
    state_dir: Path | None = Field(
        None,
        description="Where the desired state (unloaded models, pins) and each worker's status "
        "live; default <models_dir>/.dlwp-state. Point it at a writable volume shared by the "
        "replicas when the repository is read-only.",
    )
    drain_seconds: float = Field(
        0.0,
        ge=0,
        description="After SIGTERM, keep serving this long with /v2/health/ready at 503 before "
        "refusing connections (0: at once). Ctrl+C never waits for it.",
    )

    # Monitoring (issue 11)
    signals: bool = Field(
        True, description="Input and prediction signals per model in /metrics (drift, mix)."
    )
    access_log: bool = Field(
        False, description="One JSON log line per request, with its request id (costs req/s)."
    )

    # overload and slow clients (issue 13)
    admission_wait_s: float = Field(
        1.0,
        ge=0,
        description="How long a request waits for room in a full queue before 503 (0: refuse "
        "at once); holding refusals keeps clients that retry at once from crowding out the work.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection that has not sent a request's headers by then closes."
    )
    body_timeout_s: float = Field(
        20.0, gt=0, description="A body still incomplete this long after its headers gets 408."
    )
    max_connections: int = Field(
        2048, ge=1, description="Open connections per worker process; past it, idle ones go first."
    )

    # Rollouts and feedback (issue 21)
    feedback: bool | None = Field(
        None,
        description="Keep answers for a while, so POST /v1/feedback can label them later: true "
        "keeps every answer (labels to retrain on), false none; unset keeps the answers given "
        "while the model has a rollout running (live accuracy per version for its gate), so a "
        "server with no rollout pays nothing. Keeping inputs implies keeping every answer.",
    )
    feedback_db: str | None = Field(
        None,
        description="postgresql://… to share answers and labels between replicas; default an "
        "SQLite file in the state folder, shared by one host's workers.",
    )
    feedback_keep_inputs: bool = Field(
        False,
        description="Keep the inputs too (needed by `dlwp feedback export`); off by default: "
        "reviews can be personal data.",
    )
    feedback_max_answers: int = Field(
        100_000,
        ge=1,
        description="Unlabelled answers each worker keeps at most (the oldest go first).",
    )
    feedback_max_age_s: float = Field(
        86_400.0, gt=0, description="An answer can be labelled for this long (seconds)."
    )

    @cached_property
    def pinned_versions(self) -> dict[str, int]:
        """`model_versions` parsed: model name → version."""
        pins: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in self.model_versions.split(","))):
            name, _, version = item.partition("=")
            if not version.strip().isdigit():
                raise ValueError(f"DLWP_MODEL_VERSIONS: expected name=version, got {item!r}")
            pins[name.strip()] = int(version)
        return pins

    # GPU (issue 14): the batch cap and queue bound suit the device, where not set explicitly.
    @cached_property
    def batching(self) -> Batching:
        """`max_batch_size` and `max_queue_rows` as set, else the defaults for the model's device.

        Read once the backend is configured (at the first model load): finding the device
        imports the framework.
        """
        explicit = self.model_fields_set
        if {"max_batch_size", "max_queue_rows"} <= explicit:
            return Batching(self.max_batch_size, self.max_queue_rows)
        defaults = device_batching(self.backend)
        return Batching(
            self.max_batch_size if "max_batch_size" in explicit else defaults.max_batch_size,
            self.max_queue_rows if "max_queue_rows" in explicit else defaults.max_queue_rows,
        )
