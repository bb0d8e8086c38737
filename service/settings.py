"""All configuration, read once from ``HELDOUT_*`` environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HELDOUT_", extra="ignore", protected_namespaces=())

    data_dir: Path = Field(Path("./.heldout"), description="Where the SQLite file, reports and caches live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is a SQLite file in the data dir. Use PostgreSQL for replicas."
    )
    api_keys: str = Field(
        "", description="Comma-separated ROLE:KEY pairs (roles: admin, evaluator, reader), added to stored keys."
    )
    model_path: Path | None = Field(None, description="Local save_pretrained directory of the model to serve.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest accepted request body; past it, 413.")
    metric_workers: int | None = Field(
        None, ge=1, description="Processes computing generation statistics; default is the number of CPUs."
    )
    max_resamples: int = Field(10_000, ge=0, description="Cap on n_resamples for bootstrap intervals and tests.")
    max_segments: int = Field(2_000_000, gt=0, description="Cap on segments or predictions in one metrics request.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'heldout.db').resolve()}"

    @property
    def prometheus_dir(self) -> Path:
        return self.data_dir / "prometheus"


def settings_help() -> str:
    """One line per setting, for ``heldout serve --help``."""
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default is not None else "-"
        lines.append(f"  HELDOUT_{name.upper():<20} {field.description} [default: {default}]")
    return "\n".join(lines)
