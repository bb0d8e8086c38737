"""Every Prometheus series heldout exports, defined in one place.

Names follow Prometheus conventions: ``heldout_`` prefix, base units, ``_total`` on counters, and
label values drawn from bounded sets (route templates, never raw paths). In multiprocess mode the
environment variable PROMETHEUS_MULTIPROC_DIR must be set before this module is first imported.
"""

from prometheus_client import Counter, Gauge, Histogram

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

# Inference spans sub-millisecond CPU classifiers to multi-second generation.
INFERENCE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

inference_request_duration_seconds = Histogram(
    "heldout_inference_request_duration_seconds",
    "Time from a request reaching the model's queue to all its results, by served model.",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
inference_queue_duration_seconds = Histogram(
    "heldout_inference_queue_duration_seconds",
    "Time an example waited in the batching queue before its forward pass started.",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
inference_batch_duration_seconds = Histogram(
    "heldout_inference_batch_duration_seconds",
    "Time of one batched forward pass (tokenization included).",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
inference_batch_size = Histogram(
    "heldout_inference_batch_size",
    "Examples per batched forward pass.",
    ["model"],
    buckets=BATCH_SIZE_BUCKETS,
)
inference_queue_depth = Gauge(
    "heldout_inference_queue_depth",
    "Examples waiting for the model, summed over live worker processes.",
    ["model"],
    multiprocess_mode="livesum",
)
predictions_total = Counter(
    "heldout_predictions_total",
    "Predictions served, by predicted label (classifiers with at most 50 labels; otherwise empty).",
    ["model", "label"],
)
generated_tokens_total = Counter(
    "heldout_generated_tokens_total",
    "Tokens generated, end-of-sequence excluded.",
    ["model"],
)
# Named after vLLM's series (vllm:time_to_first_token_seconds, ...); from a token per millisecond on a GPU
# to seconds behind a long queue on a CPU.
TOKEN_LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
time_to_first_token_seconds = Histogram(
    "heldout_time_to_first_token_seconds",
    "Time from a served generation request reaching the engine to its first generated token, queueing included.",
    ["model"],
    buckets=TOKEN_LATENCY_BUCKETS,
)
time_per_output_token_seconds = Histogram(
    "heldout_time_per_output_token_seconds",
    "Mean time between a served generation's output tokens after the first, one observation per generation.",
    ["model"],
    buckets=TOKEN_LATENCY_BUCKETS,
)
prompt_tokens_total = Counter(
    "heldout_prompt_tokens_total",
    "Prompt tokens of served generations, after truncation.",
    ["model"],
)
generation_finished_total = Counter(
    "heldout_generation_finished_total",
    "Served generations finished, by reason: stop (end of sequence or a stop string), length (max tokens), "
    "abort (the client left or timed out).",
    ["model", "reason"],
)
inference_rejected_total = Counter(
    "heldout_inference_rejected_total",
    "Inference requests refused or abandoned: queue_full, queue_timeout, run_timeout, shutting_down.",
    ["model", "reason"],
)
model_info = Gauge(
    "heldout_model_info",
    "Always 1; labels describe the served model.",
    ["model", "version", "task", "device", "dtype"],
    multiprocess_mode="livemax",
)
inference_config_info = Gauge(
    "heldout_inference_config_info",
    "Always 1; labels are the serving choices made at start (packed linear layers, lanes, threads per lane, "
    "batch cap, whether a lone batch takes every lane's threads) and whether they were measured, set or defaults.",
    ["model", "packed_linear", "lanes", "threads_per_lane", "max_batch_size", "wide_lone_batches", "chosen_by"],
    multiprocess_mode="livemax",
)
prediction_log_dropped_total = Counter(
    "heldout_prediction_log_dropped_total",
    "Prediction log records dropped because the buffer was full or the store failed.",
)

# Evaluation jobs take from seconds (a small set on a GPU) to hours.
EVALUATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

# Scores of the latest successful evaluation per model and test set. Every process loads the same
# values from the database, so the most recently written one is right in multiprocess mode.
evaluation_score = Gauge(
    "heldout_evaluation_score",
    "Score of the latest successful evaluation of a model version on a test set (by test set name).",
    ["model", "model_version", "test_set", "metric"],
    multiprocess_mode="mostrecent",
)
evaluation_score_lower = Gauge(
    "heldout_evaluation_score_lower",
    "Lower bound of the evaluation score's 95% bootstrap interval.",
    ["model", "model_version", "test_set", "metric"],
    multiprocess_mode="mostrecent",
)
evaluation_score_upper = Gauge(
    "heldout_evaluation_score_upper",
    "Upper bound of the evaluation score's 95% bootstrap interval.",
    ["model", "model_version", "test_set", "metric"],
    multiprocess_mode="mostrecent",
)
human_rating = Gauge(
    "heldout_human_rating",
    "Mean human rating (over rated outputs, of each output's mean rating) of the latest rated evaluation of a "
    "model version on a test set (by test set name), on the set's rating scale.",
    ["model", "model_version", "test_set"],
    multiprocess_mode="mostrecent",
)
generalization_gap = Gauge(
    "heldout_generalization_gap",
    "Training-sample score minus blind-set score of the latest evaluation with generalization_gap (by test set).",
    ["model", "model_version", "test_set", "metric"],
    multiprocess_mode="mostrecent",
)
evaluations_total = Counter(
    "heldout_evaluations_total",
    "Evaluation jobs finished, by final status (succeeded, failed); restored from the database at start.",
    ["status"],
)
evaluation_duration_seconds = Histogram(
    "heldout_evaluation_duration_seconds",
    "Wall time of successful evaluation jobs, from creation to result; restored from the database at start.",
    buckets=EVALUATION_BUCKETS,
)
scoring_submissions_total = Counter(
    "heldout_scoring_submissions_total",
    "Prediction submissions to /v1/test-sets/{id}/scores, by test set name and outcome (scored, improved, "
    "unchanged, over_budget); restored from the database at start.",
    ["test_set", "outcome"],
)

# An explanation takes from milliseconds (attention on a GPU) to minutes (LIME with thousands of samples).
EXPLANATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
explanations_total = Counter(
    "heldout_explanations_total",
    "Inputs explained by /v1/explain, by method (integrated_gradients, attention, lime, kernel_shap, occlusion).",
    ["model", "method"],
)
explanation_duration_seconds = Histogram(
    "heldout_explanation_duration_seconds",
    "Time to answer one /v1/explain request, waiting for lanes included, by method.",
    ["model", "method"],
    buckets=EXPLANATION_BUCKETS,
)
