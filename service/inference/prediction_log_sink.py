"""The prediction log's sink: one multi-row INSERT per flushed batch into the service database."""

from collections.abc import Sequence
from dataclasses import fields

from sqlalchemy import insert

from service.db.models import PredictionLogEntry
from service.db.session import Database
from service.inference.prediction_log import PredictionRecord, PredictionSink

COLUMNS = tuple(field.name for field in fields(PredictionRecord))


def database_sink(db: Database) -> PredictionSink:
    def write(records: Sequence[PredictionRecord]) -> None:
        # Shallow rows: dataclasses.asdict would deep-copy every feature dict and embedding first.
        rows = [{name: getattr(record, name) for name in COLUMNS} for record in records]
        with db.engine.begin() as connection:
            connection.execute(insert(PredictionLogEntry), rows)

    return write
