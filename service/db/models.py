"""Stored entities. Schema changes go through an Alembic revision in ``migrations/versions``."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """Only the sha256 of a key is kept; the key itself is shown once at creation."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PredictionLogEntry(Base):
    """One served prediction, written in batches by ``service.inference.prediction_log``; ids join later feedback."""

    __tablename__ = "prediction_log"
    __table_args__ = (Index("ix_prediction_log_model_created_at", "model", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    model_version: Mapped[str] = mapped_column(String(64), nullable=False)
    task: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    features: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    label: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    input_text: Mapped[str | None] = mapped_column(Text)


class TestSet(Base):
    """A blind test set: immutable once committed; a re-upload under the same name is version N+1."""

    __test__ = False  # a model, not a pytest test class

    __tablename__ = "test_set"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_test_set_name_version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    version: Mapped[int | None] = mapped_column(Integer)
    """Assigned as the upload publishes, under a per-name lock; NULL while staged, and then never visible."""
    task: Mapped[str] = mapped_column(String(16), nullable=False)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    n_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    labels: Mapped[list[Any] | None] = mapped_column(JSON)
    multilabel: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    audit: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """While staged: the upload's last write; a staged set whose heartbeat is old is swept (``test_sets.staging``)."""


class TestRecord(Base):
    """One example of a test set. ``target`` (label or references) is never returned by any endpoint."""

    __test__ = False  # a model, not a pytest test class

    __tablename__ = "test_record"
    __table_args__ = (Index("ix_test_record_set_record_id", "test_set_id", "record_id"),)

    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_set.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    line: Mapped[int] = mapped_column(Integer, nullable=False)
    record_id: Mapped[str] = mapped_column(String(256), nullable=False)
    input: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[Any] = mapped_column(JSON, nullable=False)
    exact_fp: Mapped[str] = mapped_column(String(32), nullable=False)
    norm_fp: Mapped[str] = mapped_column(String(64), nullable=False)
    target_fp: Mapped[str] = mapped_column(String(32), nullable=False)
    group: Mapped[str | None] = mapped_column(String(200))
    """The record's slice, if the upload named one; like ``target``, never returned by any endpoint."""


class TrainingRecord(Base):
    """One labelled training example of the seeded sample kept at upload, for the generalization gap.

    Held like test records' targets: scored against, never returned.
    """

    __tablename__ = "training_record"

    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_set.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    input: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[Any] = mapped_column(JSON, nullable=False)


class ScoringState(Base):
    """Per key and test set: the ladder's best submission; the row also serialises the key's submissions."""

    __tablename__ = "scoring_state"

    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_set.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    best_score: Mapped[float | None] = mapped_column(Float)
    best_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    best_predictions: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class ScoringSubmission(Base):
    __tablename__ = "scoring_submission"
    __table_args__ = (Index("ix_scoring_submission_budget", "test_set_id", "key_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_set.id", ondelete="CASCADE"), nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    reported_score: Mapped[float | None] = mapped_column(Float)


class Evaluation(Base):
    """A run of the served model over a whole test set, split into shards that workers lease."""

    __tablename__ = "evaluation"
    __table_args__ = (Index("ix_evaluation_status", "status"), Index("ix_evaluation_test_set", "test_set_id"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_set.id"), nullable=False)
    test_set_name: Mapped[str] = mapped_column(String(100), nullable=False)
    test_set_version: Mapped[int] = mapped_column(Integer, nullable=False)
    test_set_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    task: Mapped[str] = mapped_column(String(16), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    model_version: Mapped[str] = mapped_column(String(64), nullable=False)
    metrics: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    extra_metrics: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    total: Mapped[int] = mapped_column(Integer, nullable=False)
    done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    """Who is reducing the finished shards into the result; the reduce lease expires like a shard's."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    human: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Summary of the human ratings of its outputs, rewritten with every rating post; NULL until the first."""


class EvaluationRating(Base):
    """One rater's rating of one output of a generation evaluation; the same rater rating it again replaces it."""

    __tablename__ = "evaluation_rating"

    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluation.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """The rated record's position in the test set, as its prediction's."""
    rater: Mapped[str] = mapped_column(String(100), primary_key=True)
    rating: Mapped[float] = mapped_column(Float, nullable=False)
    rated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)


class EvaluationShard(Base):
    """A contiguous range of test-set positions; ``output`` holds the model's predictions once done."""

    __tablename__ = "evaluation_shard"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "idx", name="uq_evaluation_shard_idx"),
        Index("ix_evaluation_shard_status", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluation.id", ondelete="CASCADE"), nullable=False)
    idx: Mapped[int] = mapped_column(Integer, nullable=False)
    start: Mapped[int] = mapped_column(Integer, nullable=False)
    stop: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    output: Mapped[list[Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class Feedback(Base):
    """Delayed ground truth for one logged prediction; a later label for the same prediction replaces it."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_model_received_at", "model", "received_at"),)

    prediction_id: Mapped[str] = mapped_column(
        ForeignKey("prediction_log.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    predicted: Mapped[str] = mapped_column(Text, nullable=False)
    """The logged prediction's label, copied so a window's scores are one grouped query."""
    label: Mapped[str] = mapped_column(Text, nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)


class DriftReference(Base):
    """A frozen copy of the features drift checks compare against, with the embedding projection fitted on it."""

    __tablename__ = "drift_reference"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_drift_reference_model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    columns: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    projection: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    """gzip'd JSON of a ``monitors.drift_features.FeatureTable``."""
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class DriftCheck(Base):
    """One drift check. A scheduled check carries its cron tick, unique per model: one replica wins it."""

    __tablename__ = "drift_check"
    __table_args__ = (
        UniqueConstraint("model", "tick", name="uq_drift_check_model_tick"),
        Index("ix_drift_check_model_status", "model", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    reference_id: Mapped[int] = mapped_column(ForeignKey("drift_reference.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    tick: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    window_to: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    rows: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    """gzip'd HTML of Evidently's report; dropped after HELDOUT_LOG_RETENTION."""
    owner: Mapped[str] = mapped_column(String(64), nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
