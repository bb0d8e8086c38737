"""SQLite hands back naive datetimes for timezone-aware columns; every stored time here is UTC."""

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
