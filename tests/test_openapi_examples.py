"""Every request body in the OpenAPI document carries an example that validates, so "Try it out" in /docs
works on the first click: each example fits its documented schema (jsonschema, an independent validator)
and, posted as it is, gets a 2xx from a live server of the right kind: the demo-like classifier, or a
tiny generator served under the examples' model name.

What an example refers to is made first, as a user would have it: traffic for the drift check, two
finished evaluations to compare, a test set holding the scored ids. The one exception is feedback: its
example names a prediction id that only live traffic makes, so it gets the domain's 422 naming that id.
"""

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from service.app import create_app
from service.schemas.evaluations import RatingsRequest
from service.schemas.test_sets import ScoreRequest
from service.settings import Settings
from tests.conftest import auth, env_keys
from tests.docs_server import DRIFT_MIN_ROWS, docs_server
from tests.live_server import served_in_thread

pytest_plugins = ["tests.inference_fixtures"]
OK = {200, 201, 202}
# A documented domain refusal some server answers an example with, by path (explanations: not for seq2seq).
DOMAIN_REFUSALS = {"/v1/feedback": "unknown prediction id", "/v1/explain": "does not apply to a seq2seq-lm model"}
# Paths whose example no server can serve: feedback names a prediction only live traffic creates.
NEVER_SERVED = {"/v1/feedback"}
GENERATOR_NAME = "my-model"  # the name the OpenAI-compatible examples send
CHAT_TEMPLATE = "{% for m in messages %}{{ m.content }} {% endfor %}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, seq2seq_dir: Path) -> Iterator[dict[str, str]]:
    """The demo-like classifier and a tiny generator, by kind: their base URLs."""
    template = tmp_path_factory.mktemp("chat") / "template.jinja"
    template.write_text(CHAT_TEMPLATE)
    generator = Settings(
        data_dir=tmp_path_factory.mktemp("generator"),
        api_keys=env_keys(),
        metric_workers=1,
        model_path=seq2seq_dir,
        model_name=GENERATOR_NAME,
        chat_template=template,
        drift_executor="thread",
    )
    with ExitStack() as stack:
        yield {
            "classifier": stack.enter_context(docs_server(tmp_path_factory.mktemp("classifier"))),
            "generator": stack.enter_context(served_in_thread(create_app(generator))),
        }


def document(base_url: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{base_url}/openapi.json").json()
    return found


def bodies(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, media type, media object) of every operation with a request body, in document order."""
    return [
        (path, media_type, media)
        for path, operations in spec["paths"].items()
        for operation in operations.values()
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items()
    ]


def examples(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [named["value"] for named in media.get("examples", {}).values()]


def test_every_json_body_has_an_example_that_fits_its_schema(servers: dict[str, str]) -> None:
    spec = document(servers["classifier"])
    found = bodies(spec)
    assert {media_type for _, media_type, _ in found} == {"application/json", "multipart/form-data"}
    for path, media_type, media in found:
        if media_type != "application/json":
            continue
        assert examples(media), f"{path}: no example"
        schema = {**media["schema"], "components": spec["components"]}
        for example in examples(media):
            jsonschema.Draft202012Validator(schema).validate(example)
    compare = next(media for path, _, media in found if path == "/v1/metrics/compare")
    assert len(examples(compare)) == 2  # one per task of the discriminated union


def test_the_upload_form_documents_an_example_for_each_required_field(servers: dict[str, str]) -> None:
    (media,) = [m for _, media_type, m in bodies(document(servers["classifier"])) if media_type.startswith("multi")]
    schema = media["schema"]
    fields = {name: spec["example"] for name, spec in schema["properties"].items() if "example" in spec}
    assert set(schema["required"]) - {"file"} <= fields.keys()
    record = b'{"id": "a", "text": "a delight", "label": "fresh"}\n'
    form = {name: json.dumps(value) if isinstance(value, bool) else str(value) for name, value in fields.items()}
    response = httpx.post(
        f"{servers['classifier']}/v1/test-sets", headers=auth("admin"), data=form, files={"file": ("s.jsonl", record)}
    )
    assert response.status_code == 201, response.text


def test_every_json_example_as_posted_gets_a_2xx_from_a_server_of_its_kind(servers: dict[str, str]) -> None:
    clients = {kind: httpx.Client(base_url=url, headers=auth("admin"), timeout=120) for kind, url in servers.items()}
    with clients["classifier"], clients["generator"]:
        scored_set = prepare(clients["classifier"])
        rated = prepare_ratings(clients["generator"])
        for path, media_type, media in bodies(document(servers["classifier"])):
            if media_type != "application/json":
                continue
            for example in examples(media):
                url = path.replace("{test_set_id}", str(scored_set)).replace("{evaluation_id}", str(rated))
                answers = {kind: client.post(url, json=example) for kind, client in clients.items()}
                for kind, response in answers.items():
                    assert response.status_code < 500, (kind, path, response.text)
                    if response.status_code == 422:  # never a validation failure: only a documented refusal
                        assert DOMAIN_REFUSALS.get(path, "\0") in response.json()["detail"], (kind, path, response.text)
                if path not in NEVER_SERVED:
                    statuses = {kind: (r.status_code, r.text[:200]) for kind, r in answers.items()}
                    assert any(r.status_code in OK for r in answers.values()), (path, example, statuses)


def prepare_ratings(client: httpx.Client) -> int:
    """On the generator: a succeeded generation evaluation whose records the ratings example names."""
    (example,) = RatingsRequest.model_json_schema()["examples"]
    rows = [json.dumps({"id": item["id"], "source": "a b", "reference": "a b"}) for item in example["items"]]
    upload = client.post(
        "/v1/test-sets",
        data={"name": "rated", "task": "generation"},
        files={"file": ("s.jsonl", "\n".join(rows).encode())},
    )
    assert upload.status_code == 201, upload.text
    job: int = client.post("/v1/evaluations", json={"test_set": "rated"}).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/evaluations/{job}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the evaluation did not finish"
        time.sleep(0.1)
    return job


def prepare(client: httpx.Client) -> int:
    """What the examples refer to, on the classifier: traffic, evaluations 1 and 2, and the scored ids' set."""
    traffic = client.post("/v1/predict", json={"inputs": [f"review {i}" for i in range(DRIFT_MIN_ROWS)]})
    assert traffic.status_code == 200, traffic.text
    jobs = [client.post("/v1/evaluations", json={"test_set": "rotten-tomatoes"}).json()["id"] for _ in range(2)]
    assert jobs == [1, 2]
    deadline = time.monotonic() + 60
    while any(client.get(f"/v1/evaluations/{job}").json()["status"] != "succeeded" for job in jobs):
        assert time.monotonic() < deadline, "the evaluations did not finish"
        time.sleep(0.1)
    (scored,) = ScoreRequest.model_json_schema()["examples"]
    rows = [
        json.dumps({"id": key, "text": f"review {key}", "label": label}) for key, label in scored["predictions"].items()
    ]
    upload = client.post(
        "/v1/test-sets",
        data={"name": "example-ids", "task": "classification"},
        files={"file": ("s.jsonl", "\n".join(rows).encode())},
    )
    assert upload.status_code == 201, upload.text
    test_set: int = upload.json()["id"]
    return test_set
