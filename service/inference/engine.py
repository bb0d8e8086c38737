"""One served model behind ``classify``, ``generate`` and ``stream``: validation, batching, metrics and the
prediction log.

Callers pass texts (or chats) and options and get domain results back; refusals are ``engine_errors``,
never HTTP.
"""

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import torch

from monitors.drift_features import classifier_log_features
from monitors.inference_metrics import InferenceMetrics
from service.inference.autotune import ServingPlan
from service.inference.batcher import BatcherRejected, DynamicBatcher
from service.inference.chat import Chat, ChatTemplate, load_chat_template
from service.inference.classifier import Classifier, ClassOutput
from service.inference.continuous_batcher import ContinuousBatcher
from service.inference.decode_session import Admitted, DecodeSession, Done
from service.inference.encoding import Encoded
from service.inference.engine_errors import NewTokensOutOfRange, TooManyInputs, WrongTask, refusal
from service.inference.generator import BatchKey, BeamSearch, Generator, GenOutput
from service.inference.kv_batch import KVBatch, cache_argument, decoding_model
from service.inference.loader import LoadedModel
from service.inference.mailbox import Mailbox
from service.inference.options import DEFAULT_NEW_TOKENS, GenerateOptions
from service.inference.prediction_log import PredictionLog, PredictionRecord
from service.inference.results import Classified, Generated, ServedModel
from service.inference.rows import Delta, Row, RowParams, Sink
from service.inference.threads import LaneThreads
from service.settings import Settings
from service.tasks import ModelTask

WARM_UP_TEXT = "warm-up"
# On a CPU, throughput barely grows past 8 examples while padding waste does; a GPU wants wide batches.
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 64
# Rows one lane decodes together. A decoding step of the LLM benchmark's GPT-2 on one CPU thread costs about
# the same per row from 16 to 48 rows (0.20 ms at 16, 0.19 at 32, 0.23 at 48), so a lane seats 32.
CPU_DECODE_ROWS = 32
GPU_DECODE_ROWS = 128
# Requests up to this many characters are tokenized on the event loop (well under a millisecond).
INLINE_TOKENIZE_CHARS = 16_384
# A single-label prediction is logged with every label's probability (for label-free performance estimates)
# up to this many labels; beyond, the log would grow by kilobytes per prediction.
MAX_LOGGED_PROBABILITIES = 64

T = TypeVar("T")
Prompt = str | Chat


def default_batch_size(loaded: LoadedModel) -> int:
    return CPU_BATCH_SIZE if loaded.device.type == "cpu" else GPU_BATCH_SIZE


def default_decode_rows(loaded: LoadedModel) -> int:
    return CPU_DECODE_ROWS if loaded.device.type == "cpu" else GPU_DECODE_ROWS


class InferenceEngine:
    def __init__(
        self, loaded: LoadedModel, settings: Settings, prediction_log: PredictionLog, plan: ServingPlan
    ) -> None:
        self.loaded = loaded
        self._settings = settings
        self._log = prediction_log
        self._metrics = InferenceMetrics(loaded.name, loaded.labels)
        on_gpu = loaded.device.type != "cpu"
        lanes = plan.lanes
        self._plan = plan
        self._threads = LaneThreads(plan.threads, lanes, on_gpu)
        self._lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"heldout-inference-{i}") for i in range(lanes)]
        self._classifier = Classifier(loaded, settings.multilabel_threshold) if loaded.task.classifies else None
        self._generator = None if loaded.task.classifies else Generator(loaded)
        tokenizer_dirs = [path for path in (settings.model_path, settings.base_model_path) if path is not None]
        self._chat = None if loaded.task.classifies else load_chat_template(
            loaded.name, settings.chat_template, tokenizer_dirs
        )
        self._batcher: DynamicBatcher[Encoded | Row, Any] = DynamicBatcher(
            self._run_batch,
            self._lanes,
            max_batch_size=plan.max_batch_size or default_batch_size(loaded),
            max_delay_s=settings.max_batch_delay_ms / 1000,
            max_queue=settings.max_queue,
            # A classifier batch costs its longest input; a static generate batch runs until its longest row
            # is done, so rows asking for similar numbers of tokens share one (at 32 streaming clients of the
            # LLM benchmark: 1660 -> 2300 tokens/s against grouping by prompt length).
            length=lambda item: len(item.ids) if isinstance(item, Encoded) else item.params.max_new_tokens,
            exclusive=_seeded_sampling,
            wide=self._classifier is not None and plan.wide_lone_batches,
            observer=self._metrics,
        )
        self._decode_lanes: list[ThreadPoolExecutor] = []
        self._decoder = self._continuous(loaded, settings, lanes)
        self._nonces = itertools.count(1)
        self._warmed = False
        self._closing = False
        self.started_at = 0
        """Unix seconds when the engine began to serve: OpenAI's ``created`` of the model."""

    def _continuous(self, loaded: LoadedModel, settings: Settings, lanes: int) -> ContinuousBatcher | None:
        """Continuous batching for a causal LM whose forward takes a spliceable cache (checked at warm-up):
        sampled and greedy rows; beam search and seeded sampling keep the static ``generate`` path."""
        cache_name = cache_argument(decoding_model(loaded.model)) if loaded.task is ModelTask.causal_lm else None
        if cache_name is None:
            return None
        metrics = self._metrics

        def make_session(done: Done, admitted: Admitted) -> DecodeSession:
            def counted(row: Row, result: GenOutput | Exception) -> None:
                if row.record and isinstance(result, GenOutput):
                    metrics.finished(row.submitted, result)
                done(row, result)

            return DecodeSession(loaded, cache_name, lambda: self._threads.use(1), counted, admitted)

        self._decode_lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"heldout-decode-{i}") for i in range(lanes)]
        return ContinuousBatcher(
            make_session,
            self._decode_lanes,
            capacity=self._plan.max_batch_size or default_decode_rows(loaded),
            max_queue=settings.max_queue,
            observer=self._metrics,
        )

    @property
    def chats(self) -> bool:
        """Whether the model has a chat template (its tokenizer's or HELDOUT_CHAT_TEMPLATE's)."""
        return isinstance(self._chat, ChatTemplate)

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
            base_model=self.loaded.base_model,
            adapter=self.loaded.adapter,
        )

    async def start(self) -> None:
        """Warm up with one forward pass, then accept requests; /readyz turns 200 only after this."""
        await asyncio.get_running_loop().run_in_executor(self._lanes[0], self._warm_up)
        self._log.start()
        self._batcher.start()
        info = self.info()
        self._metrics.describe(info.version, info.task, info.device, info.dtype)
        plan = self._plan
        default = default_batch_size if self._classifier is not None else default_decode_rows
        batch = plan.max_batch_size or default(self.loaded)
        chosen_by = ",".join(f"{name}={source}" for name, source in plan.chosen_by.items())
        self._metrics.configured(
            plan.packed_linear, plan.lanes, plan.threads_per_lane, batch, plan.wide_lone_batches, chosen_by
        )
        self.started_at = int(time.time())
        self._warmed = True

    async def aclose(self) -> None:
        """Finish every queued and running request, then stop the worker and flush the log."""
        self._closing = True
        await self._batcher.aclose()
        if self._decoder is not None:
            await self._decoder.aclose()
        for lane in [*self._lanes, *self._decode_lanes]:
            await asyncio.to_thread(lane.shutdown, True)
        await asyncio.to_thread(self._log.close)

    def _warm_up(self) -> None:
        if self._classifier is not None:
            self._classifier(self._classifier.encode([WARM_UP_TEXT]))
        else:
            assert self._generator is not None
            encoded = self._generator.encode([WARM_UP_TEXT], 1, [False])
            self._generator([Row(encoded[0], RowParams(1), record=False)], BatchKey())
            if self._decoder is not None and not self._spliceable(encoded[0]):
                self._decoder = None

    def _spliceable(self, encoded: Encoded) -> bool:
        """Whether the model's cache is one ``KVBatch`` can splice (plain dynamic layers, no sliding window)."""
        model = decoding_model(self.loaded.model)
        cache_name = cache_argument(model)
        assert cache_name is not None
        ids = torch.tensor([encoded.ids or [self.loaded.token_ids.stand_in]], device=self.loaded.device)
        with torch.inference_mode():
            batch, _ = KVBatch.prefill(model, cache_name, ids, torch.ones_like(ids))
        return batch.supported

    def _run_batch(self, items: list[Any], key: Hashable, lanes: int) -> Sequence[Any]:
        """Generation keeps to one lane's threads: a wide intra-op team on a worker thread ran each decoding
        step of the benchmark's GPT-2 at half speed on two cores (2.4 against 1.2 ms a token), and a lone
        batch on one lane leaves the others free for requests arriving meanwhile."""
        if self._classifier is not None:
            self._threads.use(lanes)
            return self._classifier(items)
        self._threads.use(1)
        assert self._generator is not None and isinstance(key, BatchKey)
        outputs = self._generator(items, key)
        for row, out in zip(items, outputs, strict=True):
            if row.record:
                self._metrics.finished(row.submitted, out)
        return outputs

    async def classify(self, texts: Sequence[str], *, record: bool = True) -> Classified:
        """Labels and probabilities of each text.

        ``record=False`` is for test-set inputs and drift references: served predictions are logged (for
        drift and feedback) and counted; those inputs are neither, so they never pass for live traffic.
        """
        if self._classifier is None:
            raise WrongTask(self.loaded.name, self.loaded.task)
        self._check_count(texts)
        classifier = self._classifier
        examples = await _tokenized(lambda: classifier.encode(texts), sum(map(len, texts)))
        outputs: list[ClassOutput] = await self._submit(examples, None)
        ids = [str(uuid.uuid4()) for _ in outputs]
        if record:
            self._metrics.predicted(out.label for out in outputs)
            self._log_predictions(texts, ids, outputs)
        return Classified(self.loaded.name, self.loaded.version, self.loaded.labels, ids, outputs)

    async def generate(self, prompts: Sequence[Prompt], options: GenerateOptions, *, record: bool = True) -> Generated:
        """A continuation (causal LM) or output text (seq2seq) of each prompt; ``record`` as for ``classify``.

        A ``Chat`` is rendered with the model's chat template first. Should the call be abandoned (its
        timeout, its caller gone), its rows stop generating at the next step.
        """
        texts, rows, key = await self._rows(prompts, options, record, None)
        try:
            outputs = await self._decode(rows, key)
        finally:
            _cancel(rows)
        return self._generated(texts, outputs, record)

    async def stream(
        self, prompts: Sequence[Prompt], options: GenerateOptions
    ) -> AsyncGenerator[Delta | Generated, None]:
        """Each prompt's text as it is generated (``Delta``), then the whole result, as ``generate`` returns it.

        Refusals are raised before the first delta. Closing the iterator early stops its rows' generation.
        """
        mailbox = Mailbox(asyncio.get_running_loop(), self._settings.stream_interval_ms / 1000)
        texts, rows, key = await self._rows(prompts, options, True, mailbox.put)
        # The worker posts every delta before the batch's results, so the mailbox closes after the last one.
        submitted = asyncio.ensure_future(self._decode(rows, key))
        submitted.add_done_callback(lambda _: mailbox.close())
        try:
            while (deltas := await mailbox.take()) is not None:
                for delta in deltas:
                    yield delta
            outputs = submitted.result()
        finally:
            _cancel(rows)
            submitted.cancel()
        yield self._generated(texts, outputs, True)

    async def _rows(
        self, prompts: Sequence[Prompt], options: GenerateOptions, record: bool, sink: Sink | None
    ) -> tuple[list[str], list[Row], BatchKey]:
        """Validated, rendered and tokenized prompts, and the key of the batches they may join."""
        if self._generator is None or self._chat is None:
            raise WrongTask(self.loaded.name, self.loaded.task)
        self._check_count(prompts)
        params = self._params(options)
        chat = self._chat
        texts = [prompt if isinstance(prompt, str) else chat.render(prompt) for prompt in prompts]
        templated = [not isinstance(prompt, str) for prompt in prompts]
        generator = self._generator
        encoded = await _tokenized(
            lambda: generator.encode(texts, params.max_new_tokens, templated), sum(map(len, texts))
        )
        rows = [Row(e, params, index, sink, record) for index, e in enumerate(encoded)]
        beams = None
        if options.num_beams > 1:
            beams = BeamSearch(params.max_new_tokens, options.num_beams, params.do_sample, params.temperature)
        seeded = options.do_sample and options.seed is not None
        key = BatchKey(beams, options.seed if seeded else None, next(self._nonces) if seeded else 0)
        return texts, rows, key

    def _generated(self, texts: Sequence[str], outputs: list[GenOutput], record: bool) -> Generated:
        ids = [str(uuid.uuid4()) for _ in outputs]
        if record:
            self._metrics.generated(len(outputs), sum(out.tokens for out in outputs))
            self._log_predictions(texts, ids, outputs)
        return Generated(self.loaded.name, self.loaded.version, ids, outputs)

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    @property
    def idle_s(self) -> float:
        """Seconds since the last prediction or generation was submitted."""
        return self._batcher.idle_s

    async def borrow_lanes(self, count: int, reserve: int = 0) -> list[int]:
        """``count`` of the model's lanes for work below every queued request (explanations), taken only while
        nothing is queued and borrowers leave ``reserve`` lanes to batches; ``return_lanes`` hands them back.
        Raises ``ShuttingDown`` once closing."""
        try:
            return await self._batcher.borrow(count, reserve)
        except BatcherRejected as exc:
            raise refusal(exc) from None

    def return_lanes(self, lanes: Sequence[int]) -> None:
        """On the event loop."""
        self._batcher.give_back(lanes)

    def use_lane_threads(self, lanes: int) -> None:
        """Give the calling thread the intra-op threads of ``lanes`` lanes, as a batch holding them gets."""
        self._threads.use(lanes)

    def flush_log(self) -> None:
        """Write buffered prediction records now (blocking), so feedback on fresh predictions finds them."""
        self._log.flush()

    def _check_count(self, texts: Sequence[object]) -> None:
        if len(texts) > self._settings.max_inputs:
            raise TooManyInputs(len(texts), self._settings.max_inputs)

    def _params(self, options: GenerateOptions) -> RowParams:
        """Each row's options, checked against the service's and the model's bounds."""
        max_new_tokens = options.max_new_tokens
        if max_new_tokens is None:
            max_new_tokens = min(DEFAULT_NEW_TOKENS, self._settings.max_new_tokens)
        if max_new_tokens < 1:
            raise NewTokensOutOfRange("must be at least 1", options.length_field)
        if max_new_tokens > self._settings.max_new_tokens:
            raise NewTokensOutOfRange(
                f"{max_new_tokens} exceeds HELDOUT_MAX_NEW_TOKENS ({self._settings.max_new_tokens})",
                options.length_field,
            )
        if self.loaded.task is ModelTask.causal_lm and max_new_tokens >= self.loaded.max_length:
            raise NewTokensOutOfRange(
                f"must be below the model's maximum length ({self.loaded.max_length}), which includes the prompt",
                options.length_field,
            )
        temperature = options.temperature if options.do_sample else 1.0
        top_p = options.top_p if options.do_sample else 1.0
        return RowParams(max_new_tokens, options.do_sample, temperature, top_p, options.stop)

    async def _submit(self, items: Sequence[Encoded | Row], key: Hashable) -> list[Any]:
        """Queue tokenized inputs for batching: exact token counts let the batcher group by length."""
        return await self._counted(self._batcher.submit(items, key, self._settings.request_timeout_s))

    async def _decode(self, rows: Sequence[Row], key: BatchKey) -> list[GenOutput]:
        """Rows the continuous decoder can take go to it; the others to a static ``generate`` batch."""
        if self._decoder is not None and key == BatchKey():
            return await self._counted(self._decoder.submit(rows, self._settings.request_timeout_s))
        return await self._submit(rows, key)

    async def _counted(self, submitted: Awaitable[list[T]]) -> list[T]:
        start = time.perf_counter()
        try:
            results = await submitted
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
                label, score = out.label, out.score
                keep = len(out.probabilities) <= MAX_LOGGED_PROBABILITIES
                detail = {"probabilities": out.probabilities} if keep else {}
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


async def _tokenized(encode: Callable[[], T], chars: int) -> T:
    """Tokenizing in the request takes it off the model's worker thread; large requests go to a thread so
    the event loop never stalls on them."""
    return encode() if chars <= INLINE_TOKENIZE_CHARS else await asyncio.to_thread(encode)


def _cancel(rows: Sequence[Row]) -> None:
    """Rows already finished are unaffected; the others end at their next step."""
    for row in rows:
        row.cancelled = True


def _seeded_sampling(key: Hashable) -> bool:
    """Seeded sampling seeds torch's one global generator, so no other batch may draw from it meanwhile."""
    return isinstance(key, BatchKey) and key.nonce != 0
