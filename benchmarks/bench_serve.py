"""Serving throughput and latency: ``lmforge serve`` vs a minimal FastAPI app around a
``transformers`` ``pipeline("text-classification")`` (one request = one forward pass, the common
way such a model is served), same model folder, same requests, same machine.

    python benchmarks/bench_serve.py --model benchmarks/work/finetune/sst2_lmforge \\
        --requests 1000 --concurrency 1,4,16 [--sides lmforge,lmforge-onnx-fp32,lmforge-onnx-int8,peer] [--serve-args '--max-wait-ms 5']

Each side runs as its own server process on a free 127.0.0.1 port; the load generator (httpx,
asyncio) sends SST-2 dev sentences, one text per request, N in flight. Prints one JSON line per
(side, concurrency): requests/s, p50/p95/p99 latency in ms, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"

PEER_APP = r'''
import sys
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline
clf = pipeline("text-classification", model=sys.argv[1], top_k=None, device="cpu")
app = FastAPI()
class Req(BaseModel):
    texts: list[str]
@app.get("/ready")
def ready():
    return {"status": "ready"}
@app.post("/v1/classify")
def classify(req: Req):
    out = clf(req.texts, truncation=True, max_length=128)
    return {"results": [{"label": max(o, key=lambda d: d["score"])["label"], "probs": {d["label"]: d["score"] for d in o}} for o in out]}
if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(side: str, model: Path, port: int, work: Path, extra: list[str]) -> subprocess.Popen:
    if side == "peer":
        script = work / "peer_app.py"
        script.write_text(PEER_APP)
        cmd = [sys.executable, str(script), str(model / "best"), str(port)]
    elif side == "lmforge":
        cmd = [sys.executable, "-m", "lmforge", "serve", str(model), "--port", str(port), *extra]
    else:  # lmforge-onnx-fp32 / lmforge-onnx-int8
        onnx = model / "export" / "onnx"
        if not (onnx / "model.int8.onnx").is_file():
            subprocess.run([sys.executable, "-m", "lmforge", "export", str(model), "--quantize", "int8"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        graph = "model.int8.onnx" if side.endswith("int8") else "model.onnx"
        cmd = [sys.executable, "-m", "lmforge", "serve", str(onnx), "--backend", "onnx", "--onnx-file", graph,
               "--port", str(port), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def load(port: int, bodies: list[dict], n: int, concurrency: int) -> dict:
    """``n`` POSTs to /v1/classify (request i sends ``bodies[i % len(bodies)]``), ``concurrency`` in flight."""
    import httpx

    lat, errors = [], 0
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        async def one(i: int):
            nonlocal errors
            async with sem:
                t = time.perf_counter()
                try:
                    r = await c.post("/v1/classify", json=bodies[i % len(bodies)])
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                lat.append(1000 * (time.perf_counter() - t))
                errors += not ok
        for i in range(min(20, n)):  # warm-up, not counted
            await one(i)
        lat.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100)
    return {"requests": n, "rps": round(n / wall, 1), "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1),
            "p99_ms": round(q[98], 1), "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="a finetune folder (with best/)")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--sides", default="lmforge,lmforge-onnx-int8,peer")
    ap.add_argument("--serve-args", default="", help="extra flags for lmforge serve, e.g. '--max-wait-ms 5'")
    a = ap.parse_args()
    import csv

    with open(SHARED / "sst2" / "dev.tsv", encoding="utf-8") as fh:
        texts = [r["sentence"] for r in csv.DictReader(fh, delimiter="\t")]
    work = HERE / "work" / "serve"
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"load_before": os.getloadavg(), "texts": len(texts)}), flush=True)
    for side in a.sides.split(","):
        port = free_port()
        proc = start(side, a.model, port, work, a.serve_args.split())
        try:
            from lmforge.serving.server import wait_ready

            wait_ready(f"http://127.0.0.1:{port}", 180, lambda: proc.poll() is None)
            for c in (int(x) for x in a.concurrency.split(",")):
                r = asyncio.run(load(port, [{"texts": [t]} for t in texts], a.requests, c))
                print(json.dumps({"side": side, "concurrency": c, **r}), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
