"""All configuration, read once from ``HELDOUT_*`` environment variables."""

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self, get_args

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitors.drift_config import check_overrides
from service.monitoring.scheduler import check_cron


class Settings(BaseSettings):
    # NaN slips past checks written as refusals (`nan < 0` is false) and inf is no usable limit: no float takes either.
    model_config = SettingsConfigDict(
        env_prefix="HELDOUT_", extra="ignore", protected_namespaces=(), allow_inf_nan=False
    )

    data_dir: Path = Field(Path("./.heldout"), description="Where the SQLite file, reports and caches live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is a SQLite file in the data dir. Use PostgreSQL for replicas."
    )
    api_keys: str = Field(
        "", description="Comma-separated ROLE:KEY pairs (roles: admin, evaluator, reader), added to stored keys."
    )
    model_path: Path | None = Field(
        None, description="Local save_pretrained directory of the model to serve, or of a PEFT (LoRA) adapter."
    )
    base_model_path: Path | None = Field(
        None, description="Base model directory of an adapter whose base_model_name_or_path is not a local directory."
    )
    merge_adapter: bool = Field(True, description="Merge a LoRA adapter into its base for inference (faster).")
    chat_template: Path | None = Field(
        None, description="Jinja chat template file for /v1/chat/completions, overriding the tokenizer's."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    model_name: str | None = Field(
        None, max_length=200, description="Name the model is served under; default is its directory's name."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto is bfloat16 on GPUs that support it, float16 on others, else float32."
    )
    demo_model: bool = Field(
        True, description="With no model path, `heldout serve` builds (once) and serves the embedded demo model."
    )
    torch_threads: int | None = Field(
        None, ge=1, description="Intra-op threads for CPU inference, split among concurrent batches; default torch's."
    )
    concurrent_batches: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Forward passes that may run at once; default 1 on GPU; on a CPU with two or more threads, "
        "1 or 2, whichever measures faster at start for a classifier, else 2.",
    )
    packed_linear: bool | None = Field(
        None,
        description="On the CPU, run float32 linear layers through oneDNN with weights packed once; default: "
        "whichever of packed and stock measures faster at start.",
    )
    wide_lone_batches: bool | None = Field(
        None,
        description="On the CPU, a classifier batch with nothing queued behind it runs on every lane's threads "
        "instead of its own lane's; default: whichever measures faster at start for one example (on some CPUs an "
        "intra-op team started on a worker thread is slower than one thread).",
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Most examples merged into one forward pass; default 64 on GPU, and on CPU the smallest of 8, 16 and 32 "
            "within 5% of the best cost per example measured at start. For a causal LM, the rows each lane "
            "decodes together; default 32 on CPU, 128 on GPU."
        ),
    )
    max_batch_delay_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="Longest an example waits for others while the model is idle; batches fill while it is busy.",
    )
    stream_interval_ms: float = Field(
        50.0,
        ge=0,
        le=1000,
        description=(
            "Shortest time between two events of one streamed response: the first text and the last go at once, "
            "and the tokens generated in between go in one chunk. Each event costs the server and the client CPU, "
            "which on a CPU host is taken from decoding; 0 sends every step's text as it comes."
        ),
    )
    max_queue: int = Field(
        1024, ge=1, description="Most examples waiting for the model; past it, 429 with Retry-After."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Inference deadline: 503 if still queued when it passes, 504 if still running."
    )
    max_inputs: int = Field(256, ge=1, description="Most inputs in one /v1/predict or /v1/generate request.")
    max_new_tokens: int = Field(512, ge=1, description="Cap on max_new_tokens in /v1/generate.")
    explain_max_inputs: int = Field(16, ge=1, description="Most inputs in one /v1/explain request; past it, 422.")
    explain_max_steps: int = Field(
        500, ge=1, description="Cap on n_steps (integrated gradients) in /v1/explain; past it, 422."
    )
    explain_max_samples: int = Field(
        2000, ge=2, description="Cap on n_samples (LIME, kernel SHAP) in /v1/explain; past it, 422."
    )
    explain_max_queue: int = Field(
        8, ge=1, description="Explanation requests running or waiting for lanes at once; past it, 429 with Retry-After."
    )
    explain_timeout_s: float = Field(
        300.0, gt=0, description="Deadline of one /v1/explain request; past it, 504 and the rest is not computed."
    )
    multilabel_threshold: float = Field(
        0.5, gt=0, lt=1, description="Multi-label models return every label whose probability is above this."
    )
    log_input_text: bool = Field(True, description="Store input texts in the prediction log, not only their features.")
    log_text_chars: int = Field(
        2000, ge=0, description="Most characters of an input text the prediction log stores (drift reads no more)."
    )
    log_buffer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Most bytes of prediction-log records buffered in memory before the oldest are dropped.",
    )
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest accepted request body; past it, 413.")
    max_upload_bytes: int = Field(
        8 * 1024**3, gt=0, description="Largest test-set upload (streamed to disk, not memory); past it, 413."
    )
    metric_workers: int | None = Field(
        None, ge=1, description="Processes computing generation statistics; default is the number of CPUs."
    )
    max_resamples: int = Field(10_000, ge=0, description="Cap on n_resamples for bootstrap intervals and tests.")
    max_segments: int = Field(2_000_000, gt=0, description="Cap on segments or predictions in one metrics request.")
    metrics_timeout_s: float = Field(
        120.0, gt=0, description="Deadline for one metrics computation; past it, 503 and the computation is stopped."
    )
    max_concurrent_metrics: int = Field(
        2, ge=1, description="Metrics computations that may run at once; past it, 429 with Retry-After."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    max_record_bytes: int = Field(
        1024 * 1024, ge=1024, description="Longest record (line) in a test-set or training upload; past it, 422."
    )
    scoring_resamples: int = Field(
        1000, ge=0, description="Bootstrap resamples behind score intervals and ladder tests (capped by max_resamples)."
    )
    min_slice_size: int = Field(
        30, ge=1, description="Smallest group a blind set reports as its own slice; smaller ones pool into `other`."
    )
    training_sample: int = Field(
        1000, ge=0, description="Labelled training records an upload's training_file keeps (seeded sample) for the "
        "generalization gap; 0 keeps none.",
    )
    overfitting_gap: float = Field(
        0.05, ge=0, description="An evaluation reports overfitting when the gap's lower bound exceeds this (0-1 scale)."
    )
    evaluation_worker: bool = Field(True, description="Run evaluation jobs in this process (with a model loaded).")
    evaluation_shard_size: int = Field(256, ge=1, description="Examples per evaluation shard: the unit of leasing.")
    evaluation_lease_s: float = Field(
        30.0, gt=0, description="Shard lease; a lease not renewed for this long is taken over by another worker."
    )
    evaluation_poll_s: float = Field(1.0, gt=0, description="How often an idle evaluation worker looks for shards.")
    evaluation_max_attempts: int = Field(
        3, ge=1, description="Failed runs of one shard before its evaluation fails (busy-model retries do not count)."
    )
    evaluate_modules: str = Field(
        "", description="Comma-separated paths of local `evaluate` modules an evaluation may name in extra_metrics."
    )

    log_retention: timedelta = Field(
        timedelta(days=30),
        description="Prediction log rows (with their feedback) and drift reports older than this are deleted; "
        "ISO 8601 duration (P30D) or seconds.",
    )
    online_window_size: int = Field(
        1000, ge=1, description="Online accuracy and F1 cover the most recent this many feedback items."
    )
    online_window: timedelta | None = Field(
        None, description="When set, online accuracy and F1 cover the feedback received within this duration instead."
    )
    drift_schedule: str | None = Field(
        None, description="Cron expression for in-process drift checks (e.g. '*/30 * * * *'); unset, none run."
    )
    drift_window: timedelta = Field(
        timedelta(hours=24), description="Window a drift check compares when its request names none: this long back."
    )
    drift_max_rows: int = Field(100_000, ge=1, description="Most logged predictions (the newest) a drift check reads.")
    drift_min_rows: int = Field(
        500, ge=1, description="Fewest predictions a check's window or a reference needs; distances are noisy below it."
    )
    drift_reference_rows: int = Field(
        20_000, ge=1, description="Most rows a drift reference keeps, sampled evenly over its source."
    )
    drift_methods: dict[str, str] = Field(
        {},
        description='Drift method per column, as JSON overriding the defaults, e.g. {"n_chars": "ks"}. Columns: '
        "n_chars, n_tokens, unk_share, confidence (wasserstein), label (jensenshannon), "
        "text (abs_text_content_drift), embedding (model).",
    )
    drift_thresholds: dict[str, float] = Field(
        {}, description="Drift threshold per column, as JSON overriding the defaults (0.1; text and embedding 0.55)."
    )
    drift_share: float = Field(
        0.5, gt=0, le=1, description="Dataset drift is reported when at least this share of the columns drift."
    )
    drift_text_sample: int = Field(
        2000, ge=20, description="Texts per side the text drift domain classifier uses, sampled with a fixed seed."
    )
    drift_embedding_sample: int = Field(
        5000, ge=20, description="Rows per side the embedding drift method uses, sampled with a fixed seed."
    )
    drift_embedding_components: int = Field(
        4, ge=1, le=16, description="Principal components of the logged embedding sketch a reference fits."
    )
    drift_executor: Literal["process", "thread"] = Field(
        "process", description="Where drift checks run: a separate low-priority process, or a thread of this one."
    )
    drift_timeout_s: float = Field(
        900.0, gt=0, description="A drift check not finished this long after it was queued is recorded as failed."
    )
    monitor_interval_s: float = Field(
        60.0, gt=0, description="How often a replica reloads drift and online gauges from the database and prunes."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")

    @field_validator("*", mode="before")
    @classmethod
    def _seconds_as_duration(cls, value: Any, info: ValidationInfo) -> Any:
        """Pydantic reads a number as seconds, but not a numeric string, which is all an environment holds."""
        annotation = cls.model_fields[str(info.field_name)].annotation
        if isinstance(value, str) and timedelta in (annotation, *get_args(annotation)):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @field_validator("*")
    @classmethod
    def _check_durations_positive(cls, value: Any) -> Any:
        """A zero or negative window is accepted by the parser but empties it: a negative retention deleted
        predictions seconds after they were logged."""
        if isinstance(value, timedelta) and value <= timedelta(0):
            raise ValueError(f"must be a positive duration, got {value.total_seconds():g} seconds")
        return value

    @model_validator(mode="after")
    def _check_queue_holds_a_request(self) -> Self:
        if self.max_inputs > self.max_queue:
            raise ValueError("HELDOUT_MAX_INPUTS must not exceed HELDOUT_MAX_QUEUE: such a request could never queue")
        return self

    @field_validator("drift_schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else check_cron(value.strip())

    @model_validator(mode="after")
    def _check_drift_overrides(self) -> Self:
        check_overrides(self.drift_methods, self.drift_thresholds)
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'heldout.db').resolve()}"

    @property
    def prometheus_dir(self) -> Path:
        return self.data_dir / "prometheus"


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per invalid setting, named by its variable; values are not echoed (HELDOUT_API_KEYS is secret)."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        name = f"HELDOUT_{str(loc[0]).upper()}" if loc else "settings"
        if len(loc) > 1:
            name += f" ({'.'.join(map(str, loc[1:]))})"
        cause = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
        lines.append(f"{name}: {cause if cause is not None else error['msg']}")
    return lines


def settings_help() -> str:
    """One line per setting, for ``heldout serve --help``."""
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default is not None else "-"
        lines.append(f"  HELDOUT_{name.upper():<20} {field.description} [default: {default}]")
    return "\n".join(lines)
