"""``Explainer``: checks an explanation request, admits it, and runs it on a thread of its own whose passes
borrow the serving engine's lanes (see ``passes``)."""

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import torch

from monitors.explanation_metrics import ExplanationMetrics
from service.explanations import language_model, methods
from service.explanations.classifier_model import ClassifierModel
from service.explanations.errors import (
    ExplanationsBusy,
    MethodNotApplicable,
    NothingToAttribute,
    NothingToExplain,
    OverCap,
    TooManyInputs,
    UnknownTarget,
)
from service.explanations.faithfulness import faithfulness
from service.explanations.options import DEFAULT_SAMPLES, DEFAULT_STEPS, GENERATOR_METHODS, ExplainOptions, Method
from service.explanations.passes import Passes
from service.explanations.results import Attribution, Explained, Explanation, Faithfulness
from service.explanations.tokens import TextTokenizer, TokenizedText
from service.inference.engine import InferenceEngine
from service.inference.options import GenerateOptions
from service.settings import Settings
from service.tasks import ModelTask

# Smoothing of the per-request time behind Retry-After.
RATE_SMOOTHING = 0.2
# The explaining threads' niceness: the lowest CPU priority.
NICE = 19
# A causal LM's greedy continuation, when the request gives none, is this many tokens at most.
CONTINUATION_TOKENS = 16


def _lower_priority() -> None:
    """Explaining threads (and the intra-op threads they start) run at the lowest CPU priority: where they
    share cores with the lanes serving predictions, the kernel gives those the CPU first. Linux sets
    niceness per thread; elsewhere this does nothing."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


class Explainer:
    def __init__(self, engine: InferenceEngine, settings: Settings) -> None:
        self._engine = engine
        self._loaded = engine.loaded
        self._settings = settings
        self._tokenizer = TextTokenizer(self._loaded.tokenizer, self._loaded.max_length)
        self._threads = ThreadPoolExecutor(
            settings.explain_max_queue, thread_name_prefix="heldout-explain", initializer=_lower_priority
        )
        self._admitted = 0
        self._seconds_per_request = 1.0
        self._metrics = ExplanationMetrics(self._loaded.name)

    def applicable(self) -> tuple[Method, ...]:
        task = self._loaded.task
        if task.classifies:
            return tuple(Method)
        return GENERATOR_METHODS if task is ModelTask.causal_lm else ()

    async def explain(self, texts: Sequence[str], options: ExplainOptions) -> Explained:
        """Attributions of each text; raises the ``errors`` refusals, or the engine's when it shuts down."""
        options = self._bounded(texts, options)
        tokenized = self._tokenizer(texts)
        for index, text in enumerate(tokenized):
            if not text.content:
                raise NothingToAttribute(index)
        if self._admitted >= self._settings.explain_max_queue:
            raise ExplanationsBusy(
                f"{self._admitted} explanation requests are running or waiting and HELDOUT_EXPLAIN_MAX_QUEUE is "
                f"{self._settings.explain_max_queue}",
                retry_after_s=max(1, min(60, round(self._seconds_per_request))),
            )
        continuations = await self._continuations(tokenized, options)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        timeout = self._settings.explain_timeout_s
        passes = Passes(self._engine, loop, started + timeout, timeout)
        self._admitted += 1
        run = self._run if continuations is None else self._run_language_model
        running: Future[list[Explanation]] = self._threads.submit(run, tokenized, options, passes, continuations)
        running.add_done_callback(lambda _: loop.call_soon_threadsafe(self._leave))
        try:
            explanations = await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            passes.abandoned.set()
            raise
        seconds = time.monotonic() - started
        self._seconds_per_request += RATE_SMOOTHING * (seconds - self._seconds_per_request)
        self._metrics.explained(options.method, len(texts), seconds)
        return Explained(self._loaded.name, self._loaded.version, options.method, explanations)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _leave(self) -> None:
        self._admitted -= 1

    def _bounded(self, texts: Sequence[str], options: ExplainOptions) -> ExplainOptions:
        """``options`` checked against the settings' caps and the model, with the defaults filled in."""
        settings = self._settings
        if len(texts) > settings.explain_max_inputs:
            raise TooManyInputs(len(texts), settings.explain_max_inputs)
        if options.method not in self.applicable():
            raise MethodNotApplicable(options.method, self._loaded.task, self.applicable())
        if options.n_steps is not None and options.n_steps > settings.explain_max_steps:
            raise OverCap("n_steps", options.n_steps, "HELDOUT_EXPLAIN_MAX_STEPS", settings.explain_max_steps)
        if options.n_samples is not None and options.n_samples > settings.explain_max_samples:
            raise OverCap("n_samples", options.n_samples, "HELDOUT_EXPLAIN_MAX_SAMPLES", settings.explain_max_samples)
        classifies = self._loaded.task.classifies
        if classifies and options.target is not None and options.target not in self._loaded.labels:
            raise UnknownTarget(options.target, self._loaded.labels)
        return replace(
            options,
            n_steps=options.n_steps or min(DEFAULT_STEPS, settings.explain_max_steps),
            n_samples=options.n_samples or min(DEFAULT_SAMPLES, settings.explain_max_samples),
        )

    async def _continuations(
        self, texts: list[TokenizedText], options: ExplainOptions
    ) -> list[tuple[list[int], list[int]]] | None:
        """A causal LM's greedy continuation of each input and the one to explain (the target, if given), as
        token ids; None for a classifier. The greedy ones are generated by the engine (unrecorded)."""
        if self._loaded.task.classifies:
            return None
        tokens = min(CONTINUATION_TOKENS, self._settings.max_new_tokens, self._loaded.max_length - 1)
        generated = await self._engine.generate([t.text for t in texts], GenerateOptions(tokens), record=False)
        greedy = self._tokenizer([out.text for out in generated.outputs], special_tokens=False)
        explained = greedy
        if options.target is not None:
            explained = self._tokenizer([options.target], special_tokens=False) * len(texts)
        pairs = []
        for index, (text, ours, theirs) in enumerate(zip(texts, greedy, explained, strict=True)):
            if not theirs.ids:
                raise NothingToExplain(index, "the model's continuation is empty: give one as target")
            if len(text.ids) + len(theirs.ids) > self._loaded.max_length:
                limit = self._loaded.max_length
                raise NothingToExplain(index, f"with its continuation it exceeds the model's {limit} positions")
            pairs.append((ours.ids, theirs.ids))
        return pairs

    def _run_language_model(
        self,
        texts: list[TokenizedText],
        options: ExplainOptions,
        passes: Passes,
        continuations: list[tuple[list[int], list[int]]] | None,
    ) -> list[Explanation]:
        """On an explaining thread: each prompt's tokens, attributed the explained continuation's log-probability.
        Faithfulness is not scored for causal LMs."""
        assert continuations is not None and options.n_steps is not None
        model = language_model.LanguageModel(self._loaded, passes)
        explanations = []
        try:
            for text, (greedy, explained) in zip(texts, continuations, strict=True):
                with torch.no_grad():
                    score = float(model.log_probability(torch.tensor([text.ids]), torch.tensor(greedy)).exp())
                if options.method is Method.integrated_gradients:
                    attributed = language_model.integrated_gradients(model, text, explained, options.n_steps)
                else:
                    attributed = language_model.occlusion(model, text, explained)
                label, target = self._tokenizer.decode(greedy), self._tokenizer.decode(explained)
                words = _word_sums(text, attributed.tokens)
                explanations.append(self._explanation(text, label, score, target, attributed, words, None))
        finally:
            passes.release()
        return explanations

    def _run(
        self,
        texts: list[TokenizedText],
        options: ExplainOptions,
        passes: Passes,
        continuations: list[tuple[list[int], list[int]]] | None,
    ) -> list[Explanation]:
        """On an explaining thread: predict, attribute, score faithfulness."""
        try:
            model = ClassifierModel(self._loaded, passes)
            probabilities = model.row_probabilities([text.ids for text in texts]).tolist()
            labels = self._loaded.labels
            if options.target is not None:
                targets = [labels.index(options.target)] * len(texts)
            else:
                targets = [max(range(len(labels)), key=row.__getitem__) for row in probabilities]
            attributed = _attribute(model, texts, targets, options)
            words = [_word_sums(text, a.tokens) for text, a in zip(texts, attributed, strict=True)]
            faithful: list[Faithfulness | None] = [None] * len(texts)
            if options.faithfulness:
                faithful = list(faithfulness(model, texts, words, targets, options.seed))
        finally:
            passes.release()
        labels = self._loaded.labels
        return [
            self._explanation(text, *self._prediction(row), labels[target], result, word_attributions, faith)
            for text, row, target, result, word_attributions, faith in zip(
                texts, probabilities, targets, attributed, words, faithful, strict=True
            )
        ]

    def _prediction(self, probabilities: list[float]) -> tuple[str | list[str], float | list[float]]:
        labels = self._loaded.labels
        if self._loaded.task is ModelTask.multi_label:
            chosen = [i for i, p in enumerate(probabilities) if p > self._settings.multilabel_threshold]
            return [labels[i] for i in chosen], [probabilities[i] for i in chosen]
        best = max(range(len(labels)), key=probabilities.__getitem__)
        return labels[best], probabilities[best]

    @staticmethod
    def _explanation(
        text: TokenizedText,
        label: str | list[str],
        score: float | list[float],
        target: str,
        attributed: methods.Attributed,
        word_attributions: list[float],
        faith: Faithfulness | None,
    ) -> Explanation:
        tokens = [
            Attribution(text.text[start:end], start, end, value)
            for (start, end), value in zip((text.offsets[p] for p in text.content), attributed.tokens, strict=True)
        ]
        words = [
            Attribution(text.text[start:end], start, end, value)
            for (start, end), value in zip(text.words, word_attributions, strict=True)
        ]
        return Explanation(
            id=str(uuid.uuid4()),
            label=label,
            score=score,
            target=target,
            tokens=tokens,
            words=words,
            convergence_delta=attributed.convergence_delta,
            faithfulness=faith,
            truncated=text.truncated,
        )


def _attribute(
    model: ClassifierModel, texts: list[TokenizedText], targets: list[int], options: ExplainOptions
) -> list[methods.Attributed]:
    if options.method is Method.integrated_gradients:
        assert options.n_steps is not None
        return methods.integrated_gradients(model, texts, targets, options.n_steps)
    if options.method is Method.attention:
        return methods.attention(model, texts)
    pairs = zip(texts, targets, strict=True)
    if options.method is Method.occlusion:
        return [methods.occlusion(model, text, target) for text, target in pairs]
    sampled = methods.lime if options.method is Method.lime else methods.kernel_shap
    assert options.n_samples is not None
    return [sampled(model, text, target, options.n_samples, options.seed) for text, target in pairs]


def _word_sums(text: TokenizedText, token_attributions: list[float]) -> list[float]:
    """Each word's attribution: the sum of its tokens' (0 for a word without tokens)."""
    sums = [0.0] * len(text.words)
    for position, value in zip(text.content, token_attributions, strict=True):
        sums[text.word_of[position]] += value
    return sums
