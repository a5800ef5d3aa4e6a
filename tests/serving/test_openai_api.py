"""The OpenAI-compatible endpoints, driven by the official ``openai`` client against a real uvicorn
server on 127.0.0.1: models, completions (plain and streamed, same text as /v1/generate) and
embeddings (the client's default base64 and floats, equal to /v1/embed)."""

import threading

import numpy as np
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from lmforge.serving.app import build_app  # noqa: E402
from lmforge.serving.config import ServeConfig  # noqa: E402
from lmforge.serving.server import free_port, wait_ready  # noqa: E402


def serve(model: str, **over):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(ServeConfig(model=model, **over)), host="127.0.0.1", port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, 60)
    return base, server, thread


@pytest.fixture(scope="module")
def decoder_server(tiny_decoder):
    base, server, thread = serve(str(tiny_decoder), max_new_tokens=32)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def test_completions_through_the_official_client(decoder_server):
    import httpx

    client = openai.OpenAI(base_url=f"{decoder_server}/v1", api_key="unused", max_retries=0)
    models = client.models.list()
    assert len(models.data) == 1 and models.data[0].owned_by == "lmforge"
    model = models.data[0].id
    ours = httpx.post(f"{decoder_server}/v1/generate", json={"prompt": "def add(a, b):", "max_new_tokens": 12,
                                                              "temperature": 0, "ignore_eos": False}).json()
    done = client.completions.create(model=model, prompt="def add(a, b):", max_tokens=12, temperature=0)
    assert done.object == "text_completion" and done.choices[0].text == ours["text"]
    assert done.choices[0].finish_reason in ("length", "stop") and done.usage.completion_tokens == ours["usage"]["completion_tokens"]
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    pieces, finish, usage = [], None, None
    for chunk in client.completions.create(model=model, prompt="def add(a, b):", max_tokens=12, temperature=0,
                                           stream=True, stream_options={"include_usage": True}):
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(pieces) == ours["text"] and finish == done.choices[0].finish_reason
    assert usage.completion_tokens == done.usage.completion_tokens
    sampled = [client.completions.create(model=model, prompt="x", max_tokens=8, temperature=0.9, top_p=0.9, seed=7)
               .choices[0].text for _ in range(2)]
    assert sampled[0] == sampled[1]  # the same seed and settings: the same text
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.completions.create(model=model, prompt="x", max_tokens=10_000)
    assert err.value.body["field"] == "max_tokens"
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=model, prompt="x", n=3)
    with pytest.raises(openai.NotFoundError):  # a decoder has no embeddings
        client.embeddings.create(model=model, input="x")


def test_embeddings_through_the_official_client(make_hf_lm, tmp_path):
    import httpx

    base, server, thread = serve(str(make_hf_lm(tmp_path / "bert", "bert")))
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        texts = ["the w1 of w2", "w3 and w4"]
        want = np.array([r["embedding"] for r in httpx.post(f"{base}/v1/embed", json={"texts": texts}).json()["results"]])
        got = client.embeddings.create(model="any", input=texts)  # the client asks for base64 by default
        floats = client.embeddings.create(model="any", input=texts, encoding_format="float")
        for res in (got, floats):
            vecs = np.array([d.embedding for d in sorted(res.data, key=lambda d: d.index)])
            np.testing.assert_allclose(vecs, want, atol=1e-6)
        assert got.usage.prompt_tokens > 0 and got.usage.total_tokens == got.usage.prompt_tokens
    finally:
        server.should_exit = True
        thread.join(timeout=10)
