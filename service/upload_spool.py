"""Multipart uploads spooled to the data dir, not the system temp dir.

Starlette spools uploaded files over 1 MiB to ``tempfile``'s directory, which in a container is often a
small memory- or node-backed ``/tmp``: a test set near HELDOUT_MAX_UPLOAD_BYTES would fill it (and get
the pod evicted). The data dir is where the database already keeps that much, on the data volume.
"""

from pathlib import Path
from tempfile import SpooledTemporaryFile

from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from service.db.session import private_dir
from service.errors import ProblemError

MULTIPART = "multipart/form-data"


def spool_dir(data_dir: Path) -> Path:
    return data_dir / "spool"


class _SpoolingParser(MultiPartParser):
    """Starlette's parser, with each file part's spool in ``directory``."""

    def __init__(self, headers: Headers, request: Request, directory: Path, **limits: int) -> None:
        super().__init__(headers, request.stream(), **limits)
        self._directory = directory

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        upload = self._current_part.file
        if upload is None:
            return
        # Not a context manager: the form owns the file until the route closes it.
        spool = SpooledTemporaryFile(max_size=self.spool_max_size, dir=str(self._directory))  # noqa: SIM115
        self._files_to_close_on_error.pop().close()
        self._files_to_close_on_error.append(spool)
        upload.file = spool  # type: ignore[assignment]


async def read_form(request: Request, data_dir: Path, max_files: int, max_fields: int, max_part_size: int) -> FormData:
    """The request's multipart form (415 for any other body); files past 1 MiB spool (as unlinked files) to
    ``data_dir/spool``."""
    sent = request.headers.get("content-type")
    if not (sent or "").lower().startswith(MULTIPART):
        message = f"a test-set upload is a {MULTIPART} body (curl -F); the body was sent as {sent or 'no media type'}"
        raise ProblemError(415, message, headers={"Accept-Post": MULTIPART})
    parser = _SpoolingParser(
        request.headers,
        request,
        private_dir(spool_dir(data_dir)),
        max_files=max_files,
        max_fields=max_fields,
        max_part_size=max_part_size,
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ProblemError(400, exc.message) from None
