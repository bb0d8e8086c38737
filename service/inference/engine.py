"""One served model behind ``classify`` and ``generate``: validation, batching, metrics and the prediction log.

Callers pass texts and options and get domain results back; refusals are ``engine_errors``, never HTTP.
"""

import asyncio
import itertools
import time
import uuid
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import torch

from monitors.drift_features import classifier_log_features
from monitors.inference_metrics import InferenceMetrics
from service.inference.batcher import BatcherRejected, DynamicBatcher
from service.inference.classifier import Classifier, ClassOutput
from service.inference.encoding import Encoded
from service.inference.engine_errors import NewTokensOutOfRange, TooManyInputs, WrongTask, refusal
from service.inference.generator import GenerationParams, Generator, GenOutput
from service.inference.loader import LoadedModel
from service.inference.options import DEFAULT_NEW_TOKENS, GenerateOptions
from service.inference.prediction_log import PredictionLog, PredictionRecord
from service.inference.results import Classified, Generated, ServedModel
from service.inference.threads import LaneThreads, default_lanes
from service.settings import Settings
from service.tasks import ModelTask

WARM_UP_TEXT = "warm-up"
# On a CPU, throughput barely grows past 8 examples while padding waste does; a GPU wants wide batches.
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 64
# Requests up to this many characters are tokenized on the event loop (well under a millisecond).
INLINE_TOKENIZE_CHARS = 16_384


def default_batch_size(loaded: LoadedModel) -> int:
    return CPU_BATCH_SIZE if loaded.device.type == "cpu" else GPU_BATCH_SIZE


class InferenceEngine:
    def __init__(self, loaded: LoadedModel, settings: Settings, prediction_log: PredictionLog) -> None:
        self.loaded = loaded
        self._settings = settings
        self._log = prediction_log
        self._metrics = InferenceMetrics(loaded.name, loaded.labels)
        on_gpu = loaded.device.type != "cpu"
        threads = settings.torch_threads or torch.get_num_threads()
        lanes = settings.concurrent_batches or default_lanes(threads, on_gpu)
        self._threads = LaneThreads(threads, lanes, on_gpu)
        self._lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"heldout-inference-{i}") for i in range(lanes)]
        self._classifier = Classifier(loaded, settings.multilabel_threshold) if loaded.task.classifies else None
        self._generator = None if loaded.task.classifies else Generator(loaded)
        self._batcher: DynamicBatcher[Encoded, Any] = DynamicBatcher(
            self._run_batch,
            self._lanes,
            max_batch_size=settings.max_batch_size or default_batch_size(loaded),
            max_delay_s=settings.max_batch_delay_ms / 1000,
            max_queue=settings.max_queue,
            length=lambda example: len(example.ids),
            exclusive=_seeded_sampling,
            observer=self._metrics,
        )
        self._nonces = itertools.count(1)
        self._warmed = False
        self._closing = False

    @property
    def ready(self) -> bool:
        return self._warmed and not self._closing

    def info(self) -> ServedModel:
        return ServedModel(
            name=self.loaded.name,
            version=self.loaded.version,
            task=self.loaded.task.value,
            device=str(self.loaded.device),
            dtype=self.loaded.dtype_name,
            labels=self.loaded.labels,
            max_length=self.loaded.max_length,
        )

    async def start(self) -> None:
        """Warm up with one forward pass, then accept requests; /readyz turns 200 only after this."""
        await asyncio.get_running_loop().run_in_executor(self._lanes[0], self._warm_up)
        self._log.start()
        self._batcher.start()
        info = self.info()
        self._metrics.describe(info.version, info.task, info.device, info.dtype)
        self._warmed = True

    async def aclose(self) -> None:
        """Finish every queued and running request, then stop the worker and flush the log."""
        self._closing = True
        await self._batcher.aclose()
        for lane in self._lanes:
            await asyncio.to_thread(lane.shutdown, True)
        await asyncio.to_thread(self._log.close)

    def _warm_up(self) -> None:
        if self._classifier is not None:
            self._classifier(self._classifier.encode([WARM_UP_TEXT]))
        else:
            assert self._generator is not None
            params = GenerationParams(1, 1, False, 1.0, None)
            self._generator(self._generator.encode([WARM_UP_TEXT], params), params)

    def _encode(self, texts: Sequence[str], key: Hashable) -> list[Encoded]:
        if self._classifier is not None:
            return self._classifier.encode(texts)
        assert self._generator is not None and isinstance(key, tuple)
        return self._generator.encode(texts, key[0])

    def _run_batch(self, examples: list[Encoded], key: Hashable, lanes: int) -> Sequence[Any]:
        self._threads.use(lanes)
        if self._classifier is not None:
            return self._classifier(examples)
        assert self._generator is not None and isinstance(key, tuple)
        return self._generator(examples, key[0])

    async def classify(self, texts: Sequence[str], *, record: bool = True) -> Classified:
        """Labels and probabilities of each text.

        ``record=False`` is for test-set inputs and drift references: served predictions are logged (for
        drift and feedback) and counted; those inputs are neither, so they never pass for live traffic.
        """
        if self._classifier is None:
            raise WrongTask(self.loaded.name, self.loaded.task)
        self._check_count(texts)
        outputs: list[ClassOutput] = await self._submit(texts, None)
        ids = [str(uuid.uuid4()) for _ in outputs]
        if record:
            self._metrics.predicted(out.label for out in outputs)
            self._log_predictions(texts, ids, outputs)
        return Classified(self.loaded.name, self.loaded.version, self.loaded.labels, ids, outputs)

    async def generate(self, texts: Sequence[str], options: GenerateOptions, *, record: bool = True) -> Generated:
        """A continuation (causal LM) or output text (seq2seq) of each prompt; ``record`` as for ``classify``."""
        if self._generator is None:
            raise WrongTask(self.loaded.name, self.loaded.task)
        self._check_count(texts)
        params = self._params(options)
        # Seeded sampling runs alone, so a repeated call draws the same numbers whatever else is queued.
        nonce = next(self._nonces) if options.do_sample and options.seed is not None else 0
        outputs: list[GenOutput] = await self._submit(texts, (params, nonce))
        ids = [str(uuid.uuid4()) for _ in outputs]
        if record:
            self._metrics.generated(len(outputs), sum(out.tokens for out in outputs))
            self._log_predictions(texts, ids, outputs)
        return Generated(self.loaded.name, self.loaded.version, ids, outputs)

    def flush_log(self) -> None:
        """Write buffered prediction records now (blocking), so feedback on fresh predictions finds them."""
        self._log.flush()

    def _check_count(self, texts: Sequence[str]) -> None:
        if len(texts) > self._settings.max_inputs:
            raise TooManyInputs(len(texts), self._settings.max_inputs)

    def _params(self, options: GenerateOptions) -> GenerationParams:
        """The options a batch runs with; calls whose params are equal share batches."""
        max_new_tokens = options.max_new_tokens
        if max_new_tokens is None:
            max_new_tokens = min(DEFAULT_NEW_TOKENS, self._settings.max_new_tokens)
        if max_new_tokens < 1:
            raise NewTokensOutOfRange("must be at least 1")
        if max_new_tokens > self._settings.max_new_tokens:
            raise NewTokensOutOfRange(
                f"{max_new_tokens} exceeds HELDOUT_MAX_NEW_TOKENS ({self._settings.max_new_tokens})"
            )
        if self.loaded.task is ModelTask.causal_lm and max_new_tokens >= self.loaded.max_length:
            raise NewTokensOutOfRange(
                f"must be below the model's maximum length ({self.loaded.max_length}), which includes the prompt"
            )
        temperature = options.temperature if options.do_sample else 1.0
        return GenerationParams(max_new_tokens, options.num_beams, options.do_sample, temperature, options.seed)

    async def _submit(self, texts: Sequence[str], key: Hashable) -> list[Any]:
        """Tokenize, then queue for batching. Exact token counts let the batcher group by length.

        Tokenizing here takes it off the model's worker thread; large requests go to a thread so the
        event loop never stalls on them.
        """
        start = time.perf_counter()
        if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
            examples = self._encode(texts, key)
        else:
            examples = await asyncio.to_thread(self._encode, texts, key)
        try:
            results = await self._batcher.submit(examples, key, self._settings.request_timeout_s)
        except BatcherRejected as exc:
            self._metrics.rejected(exc.reason)
            raise refusal(exc) from None
        self._metrics.request(time.perf_counter() - start)
        return results

    def _log_predictions(
        self, texts: Sequence[str], ids: list[str], outputs: Sequence[ClassOutput | GenOutput]
    ) -> None:
        now = datetime.now(UTC)
        keep_text = self._settings.log_input_text
        records = []
        for text, pid, out in zip(texts, ids, outputs, strict=True):
            label: str | None = None
            score: float | None = None
            detail: dict[str, Any]
            if isinstance(out, GenOutput):
                detail = {"text": out.text, "tokens": out.tokens}
            elif isinstance(out.label, str) and isinstance(out.score, float):
                label, score, detail = out.label, out.score, {}
            else:
                detail = {"labels": out.label, "scores": out.score}
            features = (
                classifier_log_features(len(text), out.n_tokens, out.n_unknown, out.truncated, out.embedding)
                if isinstance(out, ClassOutput)
                else {"n_chars": len(text), "n_tokens": out.n_tokens, "truncated": out.truncated}
            )
            records.append(
                PredictionRecord(
                    id=pid,
                    model=self.loaded.name,
                    model_version=self.loaded.version,
                    task=self.loaded.task.value,
                    created_at=now,
                    features=features,
                    label=label,
                    score=score,
                    output=detail or None,
                    input_text=text if keep_text else None,
                )
            )
        self._log.record(records)


def _seeded_sampling(key: Hashable) -> bool:
    """Seeded sampling seeds torch's one global generator, so no other batch may draw from it meanwhile."""
    return isinstance(key, tuple) and key[1] != 0
