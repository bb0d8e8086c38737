"""Start-up and shutdown of model serving, called from the app's lifespan."""

import asyncio
import logging
from collections.abc import Callable

import torch
from fastapi import FastAPI
from transformers.utils.logging import disable_progress_bar

from service.db.session import Database
from service.inference.autotune import plan_serving
from service.inference.device import resolve_device, resolve_dtype
from service.inference.engine import InferenceEngine
from service.inference.loader import load_model
from service.inference.model_dir import ModelLoadError, inspect_model_dir
from service.inference.prediction_log import PredictionLog
from service.inference.prediction_log_sink import database_sink
from service.inference.threads import default_lanes
from service.settings import Settings

log = logging.getLogger("heldout.inference")


def build_engine(settings: Settings, db: Database) -> InferenceEngine:
    """Check, load and place the configured model; raises ModelLoadError naming what is wrong."""
    assert settings.model_path is not None
    files = inspect_model_dir(settings.model_path, settings.base_model_path)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    disable_progress_bar()  # per-load tqdm bars only clutter server logs
    device = resolve_device(settings.device)
    loaded = load_model(
        files, device, resolve_dtype(settings.dtype, device), settings.model_name, merge_adapter=settings.merge_adapter
    )
    plan = plan_serving(loaded, settings, default_lanes(torch.get_num_threads(), device.type != "cpu"))
    log.info(
        "serving %s (%s, version %s) on %s as %s; %s",
        loaded.name, loaded.task, loaded.version[:12], loaded.device, loaded.dtype_name, plan.describe(),
    )
    prediction_log = PredictionLog(
        database_sink(db), max_buffered_bytes=settings.log_buffer_bytes, max_text_chars=settings.log_text_chars
    )
    return InferenceEngine(loaded, settings, prediction_log, plan)


async def start_inference(app: FastAPI, settings: Settings, db: Database) -> None:
    """Load and warm up the model, if one is configured; a bad model directory stops start-up."""
    if settings.model_path is None:
        return
    try:
        engine = await asyncio.to_thread(build_engine, settings, db)
    except ModelLoadError as exc:
        log.error("cannot serve the model: %s", exc)
        raise
    await engine.start()
    app.state.inference = engine


async def stop_inference(app: FastAPI) -> None:
    engine: InferenceEngine | None = app.state.inference
    if engine is not None:
        await engine.aclose()


def model_check(app: FastAPI) -> Callable[[], bool]:
    """Readiness: the model is loaded, warmed up and not shutting down."""

    def check() -> bool:
        engine: InferenceEngine | None = app.state.inference
        return engine is not None and engine.ready

    return check
