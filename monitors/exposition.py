"""Renders the Prometheus text format, aggregating across worker processes when there are several."""

import os

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitors.multiproc import MULTIPROC_ENV

CONTENT_TYPE = CONTENT_TYPE_LATEST


def render_latest() -> bytes:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)

