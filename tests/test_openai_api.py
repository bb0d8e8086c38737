"""The OpenAI-compatible API with the official ``openai`` SDK as the client, against a live uvicorn server.

The oracle is the fixture model itself, loaded with transformers: greedy output must equal its own
``generate`` on the same prompt (for chat, on the prompt ``apply_chat_template`` renders), streamed text
must equal the whole answer, and requests with different options must still share forward passes.
"""

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from fastapi import FastAPI
from transformers import AutoModelForCausalLM, AutoTokenizer

from service.app import create_app
from service.evaluations.runner import EngineRunner
from service.inference.chat import Chat, ChatMessage, load_chat_template
from service.inference.rows import Delta
from service.routes.openai import ChatShape, CompletionShape, DeltaEvents
from service.schemas.openai import ChatChunkChoice, ChatCompletionChunk, ChatDelta, Completion, CompletionChoice
from service.settings import Settings
from tests.conftest import KEYS, auth, env_keys
from tests.inference_fixtures import greedy_alone
from tests.live_server import served_in_thread
from tests.prometheus_text import total

pytest_plugins = ["tests.inference_fixtures"]

SERVED = "copy-gpt2"
# The copy model continues "a b c d =" with " a b c d": a user turn becomes exactly that prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'system' %}{{ m.content }} {% endif %}"
    "{% if m.role == 'user' %}{{ m.content }} ={% endif %}{% endfor %}"
)
PROMPTS = ["a b c d =", "h g f e =", "c c a =", "b d ="]


class Live:
    def __init__(self, app: FastAPI, base_url: str) -> None:
        self.app = app
        self.base_url = base_url
        self.client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEYS["evaluator"], max_retries=0)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.base_url}/metrics", headers=auth("reader"), timeout=10).text
        return total(text, name, {"model": SERVED, **labels})


@pytest.fixture(scope="module")
def template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chat") / "template.jinja"
    path.write_text(CHAT_TEMPLATE)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, copy_lm_dir: Path, template_file: Path) -> Iterator[Live]:
    """One worker lane and a 100 ms batching window, so concurrent requests meet in one batch."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("openai-data"),
        api_keys=env_keys(),
        metric_workers=1,
        model_path=copy_lm_dir,
        model_name=SERVED,
        chat_template=template_file,
        max_new_tokens=24,
        concurrent_batches=1,
        max_batch_delay_ms=100,
        drift_executor="thread",
    )
    app = create_app(settings)
    with served_in_thread(app) as base_url:
        yield Live(app, base_url)


@pytest.fixture(scope="module")
def oracle(copy_lm_dir: Path) -> Callable[[str, int], tuple[str, int, int]]:
    """(text, prompt tokens, generated tokens) of the model's own greedy ``generate`` on one prompt alone."""
    tokenizer = AutoTokenizer.from_pretrained(copy_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(copy_lm_dir).eval()

    def generate(prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
        return greedy_alone(tokenizer, model, prompt, max_new_tokens)

    return generate


def rendered(copy_lm_dir: Path, messages: list[dict[str, str]]) -> str:
    """The chat prompt as transformers renders it, independently of the server."""
    tokenizer = AutoTokenizer.from_pretrained(copy_lm_dir)
    text = tokenizer.apply_chat_template(
        messages, chat_template=CHAT_TEMPLATE, tokenize=False, add_generation_prompt=True
    )
    assert isinstance(text, str)
    return text


def test_models_list(live: Live) -> None:
    (model,) = live.client.models.list().data
    assert (model.id, model.object, model.owned_by) == (SERVED, "model", "heldout")
    assert abs(model.created - time.time()) < 600
    assert model.model_extra is not None and model.model_extra["task"] == "causal-lm"


def test_greedy_completions_equal_the_models_own_generate(live: Live, oracle: Callable[..., Any]) -> None:
    answer = live.client.completions.create(model=SERVED, prompt=PROMPTS, max_tokens=8, temperature=0)
    expected = [oracle(prompt, 8) for prompt in PROMPTS]
    assert answer.object == "text_completion" and answer.model == SERVED
    assert [choice.index for choice in answer.choices] == list(range(len(PROMPTS)))
    assert [choice.text for choice in answer.choices] == [text for text, _, _ in expected]
    assert [choice.finish_reason for choice in answer.choices] == [
        "length" if tokens == 8 else "stop" for _, _, tokens in expected
    ]
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == sum(p for _, p, _ in expected)
    assert answer.usage.completion_tokens == sum(t for _, _, t in expected)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streamed_completion_equals_the_whole_answer(live: Live, oracle: Callable[..., Any]) -> None:
    whole = live.client.completions.create(model=SERVED, prompt=PROMPTS[0], max_tokens=8, temperature=0)
    chunks = list(
        live.client.completions.create(
            model=SERVED,
            prompt=PROMPTS[0],
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [chunk.choices[0].text for chunk in chunks if chunk.choices and chunk.choices[0].text]
    # Deltas waiting when the stream wakes go out as one chunk, so how many chunks depends on timing; the
    # streamer's one delivery per step is checked in test_inference_rows.py.
    assert texts
    assert "".join(texts) == whole.choices[0].text == oracle(PROMPTS[0], 8)[0]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        whole.choices[0].finish_reason
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_stop_strings_cut_the_text_streamed_or_not(live: Live, oracle: Callable[..., Any]) -> None:
    expected = oracle(PROMPTS[0], 8)[0].split(" c")[0]
    whole = live.client.completions.create(model=SERVED, prompt=PROMPTS[0], max_tokens=8, temperature=0, stop=[" c"])
    assert (whole.choices[0].text, whole.choices[0].finish_reason) == (expected, "stop")
    stream = live.client.completions.create(
        model=SERVED, prompt=PROMPTS[0], max_tokens=8, temperature=0, stop=" c", stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in stream if chunk.choices) == expected


def test_chat_applies_the_template_streamed_or_not(live: Live, copy_lm_dir: Path, oracle: Callable[..., Any]) -> None:
    messages = [{"role": "system", "content": "b b"}, {"role": "user", "content": "a b c d"}]
    expected = oracle(rendered(copy_lm_dir, messages), 6)[0]
    whole = live.client.chat.completions.create(model=SERVED, messages=messages, max_tokens=6, temperature=0)  # type: ignore[arg-type]
    assert whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content == expected
    chunks = list(
        live.client.chat.completions.create(
            model=SERVED,
            messages=messages,
            max_completion_tokens=6,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
        )
    )
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_errors_surface_as_sdk_exceptions_with_the_message(live: Live) -> None:
    with pytest.raises(openai.NotFoundError, match="not served"):
        live.client.completions.create(model="gpt-4o", prompt="a =", max_tokens=2)
    with pytest.raises(openai.UnprocessableEntityError, match="logprobs") as refused:
        live.client.completions.create(model=SERVED, prompt="a =", max_tokens=2, logprobs=1)
    assert refused.value.status_code == 422 and refused.value.param == "logprobs"
    with pytest.raises(openai.UnprocessableEntityError, match="n:"):
        live.client.completions.create(model=SERVED, prompt="a =", max_tokens=2, n=2)
    with pytest.raises(openai.UnprocessableEntityError, match="HELDOUT_MAX_NEW_TOKENS") as refused:
        live.client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "a"}], max_tokens=25, stream=True
        )
    assert refused.value.param == "max_tokens"
    with pytest.raises(openai.UnprocessableEntityError, match="HELDOUT_MAX_NEW_TOKENS") as refused:
        live.client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "a"}], max_completion_tokens=25
        )
    assert refused.value.param == "max_completion_tokens"
    stranger = openai.OpenAI(base_url=f"{live.base_url}/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_a_model_without_chat_template_gets_a_422(serve: Any, copy_lm_dir: Path) -> None:
    body = {"model": copy_lm_dir.name, "messages": [{"role": "user", "content": "a"}], "max_tokens": 2}
    with serve(copy_lm_dir) as client:
        response = client.post("/v1/chat/completions", headers=auth("evaluator"), json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "no chat template" in response.json()["detail"]
    assert response.json()["error"]["message"] == response.json()["detail"]


def test_a_template_in_the_tokenizer_config_is_used(copy_lm_dir: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(copy_lm_dir)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(tmp_path)
    template = load_chat_template(SERVED, None, [tmp_path])
    assert template.render(Chat((ChatMessage("user", "a b"),))) == "a b ="


class Slowed:
    """Each forward pass of the served model sleeps, and never picks end-of-sequence: generation runs long."""

    def __init__(self, live: Live, seconds: float) -> None:
        self._model = live.app.state.inference.loaded.model
        self._eos = live.app.state.inference.loaded.token_ids.eos
        self._seconds = seconds

    def _hook(self, _module: Any, _inputs: Any, output: Any) -> Any:
        time.sleep(self._seconds)
        output.logits[..., self._eos] = -torch.inf
        return output

    def __enter__(self) -> None:
        self._handle = self._model.register_forward_hook(self._hook)

    def __exit__(self, *_: object) -> None:
        self._handle.remove()


# The SDK's requests take the ASGI fast path; this media type, JSON to FastAPI only, takes the route.
THROUGH_ROUTE = {"Content-Type": "application/vnd.heldout+json"}


@pytest.mark.parametrize("headers", [{}, THROUGH_ROUTE], ids=["fast path", "route"])
def test_a_client_that_leaves_stops_its_generation(live: Live, headers: dict[str, str]) -> None:
    aborted = live.metric("heldout_generation_finished_total", reason="abort")
    with Slowed(live, 0.1):
        stream = live.client.completions.create(
            model=SERVED, prompt="a =", max_tokens=20, temperature=0, stream=True, extra_headers=headers
        )
        started = time.monotonic()
        assert next(iter(stream)).choices[0].text
        stream.close()
        while live.metric("heldout_generation_finished_total", reason="abort") == aborted:
            assert time.monotonic() - started < 1.5, "generation went on after the client left"
            time.sleep(0.05)


def test_requests_with_different_options_share_forward_passes(live: Live, oracle: Callable[..., Any]) -> None:
    model = live.app.state.inference.loaded.model
    batch_sizes: list[int] = []

    def count(_: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        batch_sizes.append((kwargs["input_ids"] if "input_ids" in kwargs else args[0]).shape[0])
        time.sleep(0.02)  # so that the requests overlap

    requests: list[dict[str, Any]] = [
        {"prompt": PROMPTS[0], "max_tokens": 3, "temperature": 0},
        {"prompt": PROMPTS[1], "max_tokens": 8, "temperature": 0},
        {"prompt": PROMPTS[2], "max_tokens": 5, "temperature": 0, "stop": " a"},
        {"prompt": PROMPTS[3], "max_tokens": 6, "temperature": 0.8, "top_p": 0.9},
    ]
    handle = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(
                pool.map(lambda r: live.client.completions.create(model=SERVED, **r).choices[0].text, requests)
            )
    finally:
        handle.remove()
    # Alone, each request would take one forward pass per token; together they share steps.
    assert max(batch_sizes) > 1 and len(batch_sizes) < sum(r["max_tokens"] for r in requests), batch_sizes
    for request, text in list(zip(requests, answers, strict=True))[:3]:
        expected = oracle(request["prompt"], request["max_tokens"])[0]
        assert text == (expected.split(request["stop"])[0] if "stop" in request else expected)


def test_a_chat_evaluation_sends_inputs_as_chat_completions_serves_them(
    serve: Any, copy_lm_dir: Path, template_file: Path
) -> None:
    texts, system = ["a b c d", "b d", "h g f"], "c"
    options = {"chat": True, "system": system, "max_new_tokens": 6}
    with serve(copy_lm_dir, chat_template=template_file) as client:
        outputs = client.portal.call(EngineRunner(client.app.state.inference, 8).run, texts, options)
        for text, output in zip(texts, outputs, strict=True):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
            body = {"model": copy_lm_dir.name, "messages": messages, "max_tokens": 6, "temperature": 0}
            served = client.post("/v1/chat/completions", headers=auth("evaluator"), json=body)
            assert served.json()["choices"][0]["message"]["content"] == output


CHUNKS: dict[type, Callable[[dict[str, Any], int, str], Any]] = {
    CompletionShape: lambda head, index, text: Completion(
        **head, choices=[CompletionChoice(index=index, text=text, finish_reason=None)]
    ),
    ChatShape: lambda head, index, text: ChatCompletionChunk(
        **head, choices=[ChatChunkChoice(index=index, delta=ChatDelta(content=text))]
    ),
}


@pytest.mark.parametrize("shape", [CompletionShape, ChatShape])
def test_a_delta_event_is_the_chunk_pydantic_would_write(shape: type[CompletionShape | ChatShape]) -> None:
    """Events are spliced into a chunk serialized once; any text, in any choice, must read back as the chunk
    model itself serializes, even a text or model name that looks like the placeholder."""
    texts = ['say "hi"\\', "naïve ☃ 𝄞\n\t\x00\x1f\u2028", DeltaEvents.PLACEHOLDER, ""]
    for model in ("tiny ☃", DeltaEvents.PLACEHOLDER):
        made = shape(model)
        for index, text in enumerate(texts):
            event = made.deltas.event(Delta(index % 2, text))
            assert event.startswith("data: ") and event.endswith("\n\n")
            expected = CHUNKS[shape](made.head, index % 2, text).model_dump_json(exclude_none=True)
            assert json.loads(event[6:-2]) == json.loads(expected)
