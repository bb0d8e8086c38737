"""Every Prometheus series heldout exports, defined in one place.

Names follow Prometheus conventions: ``heldout_`` prefix, base units, ``_total`` on counters, and
label values drawn from bounded sets (route templates, never raw paths). In multiprocess mode the
environment variable PROMETHEUS_MULTIPROC_DIR must be set before this module is first imported.
"""

from prometheus_client import Counter, Histogram

# From sub-millisecond health checks to multi-second generation and metric requests.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

http_requests_total = Counter(
    "heldout_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
http_request_duration_seconds = Histogram(
    "heldout_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
