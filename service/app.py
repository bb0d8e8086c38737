"""create_app(settings): wiring only. Behaviour lives in the modules it wires together."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service.auth import KeyStore, parse_env_keys
from service.db.migrate import migrate
from service.db.session import Database
from service.errors import install_error_handlers
from service.evaluations.startup import start_evaluations, stop_evaluations
from service.evaluations.telemetry import restore_metrics
from service.explanations.startup import start_explanations, stop_explanations
from service.fast_path import FastPath
from service.inference.startup import model_check, start_inference, stop_inference
from service.middleware import BodySizeLimit, HttpMetrics
from service.monitoring.startup import start_monitoring, stop_monitoring
from service.openapi import install_openapi
from service.readiness import Readiness, database_check
from service.request_guard import require_json_media_type
from service.routes import (
    drift,
    evaluations,
    explain,
    feedback,
    health,
    inference,
    metrics_api,
    openai,
    test_sets,
)
from service.settings import Settings
from service.test_sets.demo import register_demo_test_set
from service.test_sets.staging import sweep_stale

# Routes whose bodies are streamed to disk, so they get HELDOUT_MAX_UPLOAD_BYTES instead.
UPLOAD_PATHS = frozenset({"/v1/test-sets"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())
    db = Database(settings.resolved_database_url)
    keys = KeyStore(db, parse_env_keys(settings.api_keys))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(db, settings.data_dir)
        # Staging a killed process left behind is purged in the background; a live upload's is not touched.
        sweep = asyncio.create_task(asyncio.to_thread(sweep_stale, db), name="heldout-staging-sweep")
        await keys.start()
        await asyncio.to_thread(restore_metrics, db)
        await start_inference(app, settings, db)
        await start_explanations(app, settings)
        await asyncio.to_thread(register_demo_test_set, db, settings)
        await start_evaluations(app, settings, db)
        await start_monitoring(app, settings, db)
        # What start-up loaded (torch, transformers, the model: hundreds of thousands of objects) lives as long
        # as the process; frozen, the cyclic GC stops re-scanning it in every full collection under load.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        await stop_evaluations(app)
        await stop_monitoring(app)
        await stop_explanations(app)
        await stop_inference(app)
        await keys.aclose()
        await asyncio.gather(sweep, return_exceptions=True)
        db.dispose()

    app = FastAPI(
        title="heldout",
        version="0.1.0",
        description="Evaluation and model monitoring for fine-tuned transformer models.",
        lifespan=lifespan,
        dependencies=[Depends(require_json_media_type)],
    )
    app.state.settings = settings
    app.state.db = db
    app.state.keys = keys
    app.state.readiness = Readiness()
    app.state.readiness.add("database", database_check(db))
    app.state.inference = None
    app.state.explainer = None
    app.state.evaluations = None
    if settings.model_path is not None:
        app.state.readiness.add("model", model_check(app))

    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(FastPath)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
    )
    app.add_middleware(HttpMetrics)
    app.include_router(health.router)
    app.include_router(metrics_api.router)
    app.include_router(inference.router)
    app.include_router(explain.router)
    app.include_router(openai.router)
    app.include_router(test_sets.router)
    app.include_router(evaluations.router)
    app.include_router(feedback.router)
    app.include_router(drift.router)
    return app
