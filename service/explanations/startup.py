"""Start-up and shutdown of explanations, called from the app's lifespan: they need a served model."""

from fastapi import FastAPI

from service.explanations.runner import Explainer
from service.settings import Settings


async def start_explanations(app: FastAPI, settings: Settings) -> None:
    engine = getattr(app.state, "inference", None)
    app.state.explainer = None if engine is None else Explainer(engine, settings)


async def stop_explanations(app: FastAPI) -> None:
    """Before the model stops: explanations not yet started are dropped, running ones end at their next pass."""
    explainer: Explainer | None = getattr(app.state, "explainer", None)
    if explainer is not None:
        explainer.close()
