"""Concurrent generation through ``lmforge serve``: 8 streams at once vs one stream, with generation
batched across requests (``--generation-batch 8``, the default) and one request at a time
(``--generation-batch 1``), same server otherwise (issue 29 §4).

    python benchmarks/bench_generate_concurrent.py [--model runs/quickstart/pretrain] [--new-tokens 100] [--streams 8]

Each side is an ``lmforge serve`` process on 127.0.0.1 (torch backend, its default threads). The
client (httpx with asyncio: one event loop for every stream) sends greedy requests with ``ignore_eos`` — exactly
``--new-tokens`` tokens each — as server-sent events. "one stream": the prompts one after the
other, tokens/s = tokens / wall time; "N streams": N requests started together (different
prompts), aggregate tokens/s = all tokens / wall time until the last finishes; time to first
token measured per request from its send. Prints one JSON line per (side, streams), then the
ratios the targets are stated in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_serve import free_port  # noqa: E402

PROMPTS = ["Return the", "Create a new", "This function is", "If the file", "The default value of", "Get the",
           "Set the", "A list of", "Raise an error", "Open the file", "Read the", "Write a"]


async def one(client, prompt: str, n: int) -> dict:
    body = {"prompt": prompt, "max_new_tokens": n, "temperature": 0.0, "ignore_eos": True, "stream": True}
    t0 = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", "/v1/generate", json=body, timeout=600) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {\"token\""):
                tokens += 1
                first = first if first is not None else time.perf_counter() - t0
    return {"tokens": tokens, "ttft": first, "seconds": time.perf_counter() - t0}


async def measure(base: str, streams: int, n: int) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=base) as client:
        await one(client, "warm up", 5)
        t0 = time.perf_counter()
        if streams == 1:
            runs = [await one(client, p, n) for p in PROMPTS[:5]]
        else:
            runs = await asyncio.gather(*(one(client, p, n) for p in PROMPTS[:streams]))
        wall = time.perf_counter() - t0
    ttft = sorted(r["ttft"] for r in runs)
    return {"streams": streams, "requests": len(runs), "tokens": sum(r["tokens"] for r in runs),
            "tokens_per_s": round(sum(r["tokens"] for r in runs) / wall, 1),
            "ttft_ms_median": round(1000 * statistics.median(ttft), 1),
            "ttft_ms_p95": round(1000 * ttft[min(len(ttft) - 1, int(round(0.95 * (len(ttft) - 1))))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/quickstart/pretrain"))
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--streams", type=int, default=8)
    a = ap.parse_args()
    print(json.dumps({"load_before": os.getloadavg()}), flush=True)
    results = {}
    for batch in (8, 1):
        side = f"generation_batch={batch}"
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(a.model), "--port", str(port),
                                 "--generation-batch", str(batch), "--max-new-tokens", str(a.new_tokens)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            from lmforge.serving.server import wait_ready

            base = f"http://127.0.0.1:{port}"
            wait_ready(base, 120, lambda: proc.poll() is None)
            for streams in (1, a.streams):
                r = asyncio.run(measure(base, streams, a.new_tokens))
                results[side, streams] = r
                print(json.dumps({"side": side, **r}), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for batch in (8, 1):
        single, many = results[f"generation_batch={batch}", 1], results[f"generation_batch={batch}", a.streams]
        print(json.dumps({"side": f"generation_batch={batch}",
                          "aggregate_vs_one_stream": round(many["tokens_per_s"] / single["tokens_per_s"], 2),
                          "ttft_p95_vs_one_stream": round(many["ttft_ms_p95"] / single["ttft_ms_p95"], 2)}))


if __name__ == "__main__":
    main()
