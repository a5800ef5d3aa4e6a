"""Generation speed of a decoder: lmforge (PyTorch with and without the KV cache, ONNX fp32 and
int8) vs Hugging Face ``generate`` on the same weights, directly and streamed through
``lmforge serve``.

    python benchmarks/bench_generate.py --model runs/quickstart/pretrain [--new-tokens 200] [--threads 2]

Same prompts, greedy decoding, exactly ``--new-tokens`` new tokens for every side (EOS ignored:
``min_new_tokens`` for HF, ``ignore_eos`` for lmforge), one prompt at a time, the same thread
count (servers: their default unless ``--server-threads``). Direct sides run in this process one after the other; the HF peer runs the weights of
``lmforge export --format hf`` (``AutoModelForCausalLM``). Server sides are ``lmforge serve`` processes on
127.0.0.1, read as server-sent events by an httpx client: tokens/s counted by the client and
time to first token. Prints one JSON line per side; tokens/s is the median over prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "generate"
PROMPTS = ["Return the", "Create a new", "This function is", "If the file", "The default value of"]


def export(model: Path) -> tuple[Path, Path]:
    onnx, hf = WORK / "onnx", WORK / "hf"
    if not (onnx / "model.int8.onnx").is_file():
        subprocess.run([sys.executable, "-m", "lmforge", "export", str(model), "--quantize", "int8", "--out", str(onnx)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not (hf / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "lmforge", "export", str(model), "--format", "hf", "--out", str(hf)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return onnx, hf


def direct_sides(model: Path, onnx: Path, hf: Path, n: int, threads: int) -> list[dict]:
    from transformers import AutoModelForCausalLM

    from lmforge.inference.decoders import OnnxDecoder, TorchDecoder
    from lmforge.inference.generate import stream
    from lmforge.inference.ort import session
    from lmforge.serving.config import ServeConfig
    from lmforge.serving.runner import load_runner

    torch.set_num_threads(threads)
    runner = load_runner(ServeConfig(model=str(model)))  # the server's tokenizer and prompt rules
    lm, c = runner._decoder().model, runner.model_cfg
    prompts = [runner.prompt_ids(p) for p in PROMPTS]
    peer = AutoModelForCausalLM.from_pretrained(str(hf)).eval()
    sess = {f: session(onnx / f, threads) for f in ("model.onnx", "model.int8.onnx")}

    def ours(make):
        def run(ids):
            return [int(t) for t in stream(make(), torch.tensor([ids]), n, temperature=0.0)]
        return run

    def hf_side(use_cache):
        def run(ids):
            out = peer.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                use_cache=use_cache, pad_token_id=0)
            return out[0, len(ids):].tolist()
        return run

    sides = {
        "lmforge-torch-kv": ours(lambda: TorchDecoder(lm, True)),
        "lmforge-torch-nokv": ours(lambda: TorchDecoder(lm, False)),
        "lmforge-onnx-fp32": ours(lambda: OnnxDecoder(sess["model.onnx"], c.n_layer, c.n_head, c.head_dim)),
        "lmforge-onnx-int8": ours(lambda: OnnxDecoder(sess["model.int8.onnx"], c.n_layer, c.n_head, c.head_dim)),
        "hf-generate-kv": hf_side(True),
        "hf-generate-nokv": hf_side(False),
    }
    rows, reference = [], None
    for name, run in sides.items():
        with torch.inference_mode():
            run(prompts[0][:2])  # warm-up
            rates, tokens = [], []
            for ids in prompts:
                t = time.perf_counter()
                out = run(ids)
                rates.append(len(out) / (time.perf_counter() - t))
                tokens.append(out)
        reference = reference or tokens
        same = sum(a == b for x, y in zip(tokens, reference) for a, b in zip(x, y)) / sum(map(len, reference))
        rows.append({"side": name, "mode": "direct", "new_tokens": n, "tokens_per_s": round(statistics.median(rates), 1),
                     "min": round(min(rates), 1), "max": round(max(rates), 1),
                     "same_tokens_as_lmforge_torch_kv": round(same, 4)})
    return rows


def server_side(name: str, args: list[str], n: int, threads: int) -> dict:
    import httpx

    from lmforge.serving.server import free_port, wait_ready

    port = free_port()
    thread_args = ["--threads", str(threads)] if threads else []  # none: the server's own default
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", *args, "--port", str(port), *thread_args,
                             "--max-new-tokens", str(n)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 120, lambda: proc.poll() is None)
        rates, ttft = [], []
        for i, prompt in enumerate([PROMPTS[0]] + PROMPTS):
            body = {"prompt": prompt, "max_new_tokens": n, "temperature": 0.0, "ignore_eos": True, "stream": True}
            t0, first, count = time.perf_counter(), None, 0
            with httpx.stream("POST", f"{base}/v1/generate", json=body, timeout=300) as r:
                for line in r.iter_lines():
                    if line.startswith('data: {"token"'):
                        count += 1
                        first = first or time.perf_counter()
            if i == 0:
                continue  # warm-up
            rates.append(count / (time.perf_counter() - t0))
            ttft.append(1000 * (first - t0))
        return {"side": name, "mode": "server-sse", "new_tokens": n, "tokens_per_s": round(statistics.median(rates), 1),
                "min": round(min(rates), 1), "max": round(max(rates), 1), "ttft_ms": round(statistics.median(ttft), 1)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=Path("runs/quickstart/pretrain"))
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--server-threads", type=int, default=None,
                    help="--threads for the servers (default: theirs: cores - 1 for torch decoders, all for onnx)")
    ap.add_argument("--skip-server", action="store_true")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    onnx, hf = export(a.model)
    print(json.dumps({"load_before": os.getloadavg(), "model": str(a.model), "prompts": len(PROMPTS),
                      "torch": torch.__version__}), flush=True)
    for row in direct_sides(a.model, onnx, hf, a.new_tokens, a.threads):
        print(json.dumps(row), flush=True)
    if a.skip_server:
        return
    for name, args in (("serve-torch-kv", [str(a.model)]), ("serve-torch-nokv", [str(a.model), "--no-kv-cache"]),
                       ("serve-onnx-fp32", [str(onnx), "--backend", "onnx"]),
                       ("serve-onnx-int8", [str(onnx), "--backend", "onnx", "--onnx-file", "model.int8.onnx"])):
        print(json.dumps({**server_side(name, args, a.new_tokens, a.server_threads), "threads": a.server_threads or "default"}), flush=True)


if __name__ == "__main__":
    main()
