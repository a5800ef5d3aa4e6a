"""``lmforge serve``: the app through FastAPI's test client (endpoints, batching, limits, errors,
API key, metrics) and the real command as a subprocess on a free local port (ONNX backend, SIGTERM)."""

import json
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import ENCODER  # noqa: E402
from lmforge.serving.app import build_app  # noqa: E402
from lmforge.serving.config import ServeConfig  # noqa: E402
from lmforge.serving.runner import Runner  # noqa: E402


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, make_task_model):
    return make_task_model(tmp_path_factory.mktemp("srv") / "best", ENCODER, "sequence", ["neg", "pos"])


@pytest.fixture(scope="module")
def tagger(tmp_path_factory, make_task_model):
    return make_task_model(tmp_path_factory.mktemp("srvner") / "best", ENCODER, "token", ["O", "B-PER", "I-PER"])


def client(model, **over) -> TestClient:
    return TestClient(build_app(ServeConfig(model=str(model), **{"max_wait_ms": 20, **over})))


def test_classify_matches_the_runner_and_reports_everything(classifier):
    texts = ["the w1 of w2", "w3", "and which not " * 5]
    direct = Runner(ServeConfig(model=str(classifier))).predict(texts)
    with client(classifier) as c:
        assert c.get("/health").json() == {"status": "ok"} and c.get("/ready").status_code == 200
        info = c.get("/v1/model").json()
        assert info["task"] == "sequence" and info["labels"] == ["neg", "pos"] and info["backend"] == "torch"
        res = c.post("/v1/classify", json={"texts": texts}).json()["results"]
        assert [r["label"] for r in res] == [d["label"] for d in direct]
        for r, d in zip(res, direct):
            assert r["score"] == pytest.approx(d["score"], abs=1e-6) and abs(sum(r["probs"].values()) - 1) < 1e-4
        assert c.get("/openapi.json").json()["paths"].keys() >= {"/v1/classify", "/v1/ner", "/v1/model"}
        metrics = c.get("/metrics").text
        assert 'lmforge_requests_total{endpoint="/v1/classify",status="200"} 1.0' in metrics
        assert "lmforge_batch_size_count" in metrics and "lmforge_queue_texts" in metrics


def test_concurrent_requests_share_forward_passes(classifier):
    import concurrent.futures

    with client(classifier, max_wait_ms=200, max_batch_size=64) as c:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda i: c.post("/v1/classify", json={"texts": [f"w{i} the"]}), range(16)))
        assert all(o.status_code == 200 for o in outs)
        m = c.get("/metrics").text
        count = float(m.split("lmforge_batch_size_count ")[1].split()[0])
        assert count < 16  # fewer forward passes than requests: batched


def test_ner_entities_have_character_offsets(tagger):
    with client(tagger) as c:
        text = "  the   w1 of w2  "
        res = c.post("/v1/ner", json={"texts": [text]}).json()["results"][0]
        for e in res["entities"]:
            assert text[e["start"]:e["end"]] == e["text"] and e["type"] == "PER" and 0 <= e["score"] <= 1
        assert c.post("/v1/classify", json={"texts": ["w1"]}).status_code == 404  # wrong endpoint for a tagger


@pytest.mark.parametrize("payload,status,field", [
    ({"texts": []}, 422, "texts"), ({"texts": "one"}, 422, "texts"), ({"texts": [1, 2]}, 422, "texts.0"),
    ({"text": ["a"]}, 422, "texts"), ({"texts": ["a"], "extra": 1}, 422, "extra"),
    ({"texts": ["x" * 50]}, 422, "texts.0"), ({"texts": ["a"] * 5}, 422, "texts")])
def test_client_mistakes_are_4xx_naming_the_field(classifier, payload, status, field):
    with client(classifier, max_chars=40, max_texts=4) as c:
        r = c.post("/v1/classify", json=payload)
        assert r.status_code == status and r.json()["error"]["field"] == field, r.text


def test_raw_bodies_limits_and_api_key(classifier):
    with client(classifier, max_body_bytes=1000, api_key="s3cret") as c:
        assert c.post("/v1/classify", json={"texts": ["a"]}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.post("/v1/classify", json={"texts": ["w1"]}, headers=auth).status_code == 200
        bad = c.post("/v1/classify", content=b"{not json", headers={**auth, "content-type": "application/json"})
        assert bad.status_code == 422 and "error" in bad.json()
        json_ct = {**auth, "content-type": "application/json"}
        assert c.post("/v1/classify", content=b'{"texts": ["\\xff"]}', headers=json_ct).status_code == 422  # no such escape
        assert c.post("/v1/classify", content=b'{"texts": ["\\u00ff"]}', headers=json_ct).status_code == 200
        raw = c.post("/v1/classify", content=b'{"texts": ["\xff\xfe"]}', headers={**auth, "content-type": "application/json"})
        assert raw.status_code == 400 and "error" in raw.json()  # not even text: the body cannot be parsed
        big = c.post("/v1/classify", content=json.dumps({"texts": ["w" * 5000]}).encode(),
                     headers={**auth, "content-type": "application/json"})
        assert big.status_code == 413 and "limit" in big.json()["error"]["message"]
        assert c.get("/health").status_code == 200  # liveness needs no key
        assert c.get("/nowhere").json()["error"]["message"] == "Not Found"


def test_a_full_queue_is_429_and_a_slow_model_504(classifier):
    slow = Runner(ServeConfig(model=str(classifier)))
    real = slow.predict
    slow.predict = lambda texts: (time.sleep(0.5), real(texts))[1]
    with TestClient(build_app(ServeConfig(model=str(classifier), timeout_s=0.1), slow)) as c:
        r = c.post("/v1/classify", json={"texts": ["w1"]})
        assert r.status_code == 504 and "within" in r.json()["error"]["message"]
    with TestClient(build_app(ServeConfig(model=str(classifier), max_queue=2, max_texts=8), slow)) as c:
        assert c.post("/v1/classify", json={"texts": ["a", "b", "c"]}).status_code == 429


def test_bad_model_folder_fails_before_serving(tmp_path, capsys):
    from lmforge.cli import main

    assert main(["serve", str(tmp_path)]) == 1
    assert "not a model folder" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--backend", "onnx"]) == 1
    assert "not an ONNX export folder" in capsys.readouterr().err


def test_serve_command_end_to_end_onnx_and_sigterm(classifier, tmp_path):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("onnxruntime")
    from lmforge.cli import main
    from lmforge.serving.server import free_port, wait_ready

    assert main(["export", str(classifier), "--quantize", "int8", "--out", str(tmp_path / "onnx")]) == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(tmp_path / "onnx"), "--backend", "onnx",
                             "--onnx-file", "model.int8.onnx", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 60, lambda: proc.poll() is None)
        assert httpx.get(f"{base}/v1/model").json()["backend"] == "onnx"
        r = httpx.post(f"{base}/v1/classify", json={"texts": ["the w1 of w2", "w9"]})
        assert r.status_code == 200 and [x["label"] in ("neg", "pos") for x in r.json()["results"]] == [True, True]
        assert httpx.post(f"{base}/v1/classify", json={"texts": []}).status_code == 422
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM)


def test_batcher_never_runs_cancelled_requests():
    """What a disconnected or timed-out client leaves behind is dropped before the forward pass."""
    import asyncio

    from lmforge.serving.batcher import Batcher

    ran: list[list[str]] = []

    def run(texts):
        ran.append(list(texts))
        time.sleep(0.2)
        return [{"text": t} for t in texts]

    async def scenario():
        b = Batcher(run, max_batch_size=8, max_wait_ms=0, max_queue=100)
        b.start()
        first = asyncio.ensure_future(b.submit(["busy"]))  # occupies the model
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(["gone"]))  # queued while the model runs ...
        kept = asyncio.ensure_future(b.submit(["kept"]))
        await asyncio.sleep(0.01)
        gone.cancel()  # ... and its client leaves
        assert (await first) == [{"text": "busy"}] and (await kept) == [{"text": "kept"}]
        await b.stop()

    asyncio.run(scenario())
    assert ran == [["busy"], ["kept"]]


def test_a_client_that_disconnects_has_its_queued_work_dropped(classifier):
    """A real server (uvicorn in a thread): request A occupies the model, B queues behind it and
    its client gives up; B's text never reaches the model and the server counts a 499."""
    import threading

    httpx = pytest.importorskip("httpx")
    import uvicorn

    from lmforge.serving.server import free_port, wait_ready

    runner = Runner(ServeConfig(model=str(classifier)))
    real, ran = runner.predict, []

    def slow(texts):
        ran.append(list(texts))
        time.sleep(1.0)
        return real(texts)

    runner.predict = slow
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(ServeConfig(model=str(classifier)), runner), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 30)
        a = threading.Thread(target=lambda: httpx.post(f"{base}/v1/classify", json={"texts": ["w1 busy"]}, timeout=10))
        a.start()
        time.sleep(0.2)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{base}/v1/classify", json={"texts": ["w2 gone"]}, timeout=0.3)
        a.join()
        time.sleep(1.2)
        assert ran == [["w1 busy"]]
        assert 'status="499"} 1.0' in httpx.get(f"{base}/metrics").text
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_workers_are_separate_processes_on_one_port(classifier):
    httpx = pytest.importorskip("httpx")
    from lmforge.serving.server import free_port, wait_ready

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(classifier), "--port", str(port),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 90, lambda: proc.poll() is None)
        pids = set()
        deadline = time.time() + 60
        while len(pids) < 2 and time.time() < deadline:  # a new connection each time: the kernel spreads them
            r = httpx.post(f"{base}/v1/classify", json={"texts": ["the w1"]}, timeout=10)
            assert r.status_code == 200
            pids.add(httpx.get(f"{base}/v1/model", timeout=10).json()["pid"])
        assert len(pids) == 2 and proc.pid not in pids
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "2 workers × 1 threads" in out
    assert proc.returncode in (0, -signal.SIGTERM)


def test_rate_limit_per_client(classifier):
    with client(classifier, rate_limit=2.0, api_key="k") as c:  # with keys, a client is its key
        a = {"Authorization": "Bearer k"}
        codes = [c.post("/v1/classify", json={"texts": ["w1"]}, headers=a).status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and codes[2:] == [429, 429]  # a burst of 2, then limited
        r = c.post("/v1/classify", json={"texts": ["w1"]}, headers=a)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "rate limit" in r.json()["error"]["message"]
        assert c.post("/v1/classify", json={"texts": ["w1"]}, headers={"Authorization": "Bearer x"}).status_code == 401
        assert c.get("/health").status_code == 200  # liveness is never limited
        time.sleep(0.6)  # one token back at 2/s
        assert c.post("/v1/classify", json={"texts": ["w1"]}, headers=a).status_code == 200
        assert 'status="429"} 3.0' in c.get("/metrics").text
    with client(classifier, rate_limit=2.0) as c:  # without keys, a client is its address: made-up headers don't help
        codes = [c.post("/v1/classify", json={"texts": ["w1"]}, headers={"Authorization": f"Bearer {i}"}).status_code
                 for i in range(3)]
        assert codes == [200, 200, 429]
