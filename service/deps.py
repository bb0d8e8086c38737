"""Route dependencies shared by every router: the database, the settings, the served model and the caller.

In the FastAPI template's ``Annotated[..., Depends(...)]`` style, so a route states what it needs in its
signature and nothing reaches into ``request.app.state`` by hand. Async on purpose: FastAPI runs a sync
dependency in its thread pool, a hop per request for what is an attribute read.
"""

from typing import Annotated

from fastapi import Depends, Request

from service.auth import Principal, Role, require
from service.db.session import Database
from service.domain_errors import Unavailable
from service.explanations.runner import Explainer
from service.inference.engine import InferenceEngine
from service.settings import Settings


async def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _optional_engine(request: Request) -> InferenceEngine | None:
    engine: InferenceEngine | None = request.app.state.inference
    return engine


def served(engine: InferenceEngine | None) -> InferenceEngine:
    """The served model, or the 503 that says none is. For routes with a body, call it in the handler
    (with ``OptionalEngineDep``): a dependency raising first would answer before the body's 422."""
    if engine is None:
        raise Unavailable("no model is served: set HELDOUT_MODEL_PATH (or --model)")
    return engine


async def _optional_explainer(request: Request) -> Explainer | None:
    explainer: Explainer | None = getattr(request.app.state, "explainer", None)
    return explainer


def explaining(explainer: Explainer | None) -> Explainer:
    """The served model's explainer, or the 503 that says no model is served (called in the handler, as
    ``served``)."""
    if explainer is None:
        raise Unavailable("no model is served: set HELDOUT_MODEL_PATH (or --model)")
    return explainer


DbDep = Annotated[Database, Depends(_db)]
SettingsDep = Annotated[Settings, Depends(_settings)]
OptionalEngineDep = Annotated[InferenceEngine | None, Depends(_optional_engine)]
OptionalExplainerDep = Annotated[Explainer | None, Depends(_optional_explainer)]
ReaderDep = Annotated[Principal, Depends(require(Role.reader))]
EvaluatorDep = Annotated[Principal, Depends(require(Role.evaluator))]
AdminDep = Annotated[Principal, Depends(require(Role.admin))]
