"""A test-set upload's multipart body → the ``store.Upload`` the test-set domain stores.

The route parses the body itself, after its auth dependency has passed, so an unauthenticated client
cannot make the server spool a file to disk. Form problems answer like FastAPI's own validation (422
naming each field); a body that is not multipart answers 415, one cut off 400.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect, Request

from service.errors import ProblemError
from service.schemas.test_sets import FILE_FIELDS, UploadForm
from service.tasks import Task
from service.test_sets.config import ConfigForm
from service.test_sets.records import Format
from service.test_sets.store import Upload
from service.test_sets.training import TrainingSource
from service.upload_spool import read_form

# Multipart limits: three files at most, small text fields.
MAX_FORM_FIELDS = 20
MAX_FIELD_BYTES = 64 * 1024
TRAINING_FIELDS = ("training_file", "training_fingerprints")


async def _read(request: Request, data_dir: Path) -> FormData:
    try:
        return await read_form(
            request, data_dir, max_files=len(FILE_FIELDS), max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
    except ClientDisconnect:
        raise ProblemError(400, "the upload was cut off before its end") from None


def _validated(form: FormData) -> tuple[UploadForm, dict[str, UploadFile]]:
    """The text fields and the files, or every problem with them at once, as FastAPI would name them."""
    files = {key: value for key, value in form.items() if isinstance(value, UploadFile)}
    fields = {key: value for key, value in form.items() if not isinstance(value, UploadFile)}
    errors: list[dict[str, Any]] = []
    for key in files.keys() - set(FILE_FIELDS):
        errors.append({"type": "value_error", "loc": ("body", key), "msg": "unexpected file field"})
    for key in set(FILE_FIELDS) & fields.keys():
        errors.append({"type": "value_error", "loc": ("body", key), "msg": "must be a file"})
    if "file" not in files and "file" not in fields:
        errors.append({"type": "missing", "loc": ("body", "file"), "msg": "Field required"})
    parsed = None
    try:
        parsed = UploadForm.model_validate({k: v for k, v in fields.items() if k not in FILE_FIELDS})
    except ValidationError as exc:
        errors.extend({"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in exc.errors())
    if errors or parsed is None:
        raise RequestValidationError(errors)
    return parsed, files


def _upload(form: UploadForm, files: dict[str, UploadFile], created_by: str, training_sample: int) -> Upload:
    return Upload(
        name=form.name,
        task=Task(form.task),
        filename=files["file"].filename,
        stream=files["file"].file,
        fmt=Format(form.format) if form.format else None,
        config=ConfigForm(
            average=form.average,
            pos_label=form.pos_label,
            daily_budget=form.daily_budget,
            ladder=form.ladder,
            ladder_metric=form.ladder_metric,
            ladder_step=form.ladder_step,
            ladder_alpha=form.ladder_alpha,
            rouge_tokenize=form.rouge_tokenize,
            rouge_stemmer=form.rouge_stemmer,
            rating_scale=form.rating_scale,
        ),
        training=[TrainingSource(key, files[key].filename, files[key].file) for key in TRAINING_FIELDS if key in files],
        created_by=created_by,
        training_sample=training_sample,
    )


@asynccontextmanager
async def upload_from(
    request: Request, data_dir: Path, created_by: str, training_sample: int = 0
) -> AsyncIterator[Upload]:
    """The request's upload, its files open (spooled under the data dir) until the block ends.

    ``training_sample``: how many labelled records of a training_file to keep (HELDOUT_TRAINING_SAMPLE).
    """
    form = await _read(request, data_dir)
    try:
        yield _upload(*_validated(form), created_by, training_sample)
    finally:
        await form.close()
