"""The prediction log's sink: one multi-row INSERT per flushed batch into the service database."""

from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy import insert

from monitors.prediction_log import PredictionRecord, PredictionSink
from service.db.models import PredictionLogEntry
from service.db.session import Database


def database_sink(db: Database) -> PredictionSink:
    def write(records: Sequence[PredictionRecord]) -> None:
        with db.engine.begin() as connection:
            connection.execute(insert(PredictionLogEntry), [asdict(record) for record in records])

    return write
