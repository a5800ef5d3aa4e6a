"""GPU pretraining throughput: lmforge (eager and compiled) vs HF ``GPT2LMHeadModel`` vs nanoGPT.

One command runs every side, one after another, each in its own subprocess (compile caches,
CUDA state and memory do not leak between sides), and prints one JSON line per side and a
final line of ratios; ``--record`` appends a dated block to ``benchmarks/RESULTS.md`` under
"## GPU pretraining throughput" (a side that did not run gets no row).

What every side shares: GPT-2 shapes (``gpt2-small`` 124M or ``gpt2-medium`` 350M, learned
positions, pre-LayerNorm, biases, tied embeddings, dropout 0), vocabulary 50304 (nanoGPT's
padded GPT-2 vocabulary), the same random token batches (one seeded generator, made on the
host before the model is built, in pinned memory, copied ``non_blocking``), AdamW lr 6e-4
(constant), betas (0.9, 0.95), weight decay 0.1, fused where the build has it, gradient clip
1.0, bf16 autocast on CUDA (through lmforge's ``Precision``, as ``lmforge pretrain`` runs it),
TF32 allowed for fp32 matmuls (as nanoGPT's train.py sets). The step code is shared; only the
model, its loss and its optimizer groups differ:

* ``lmforge`` / ``lmforge-compiled``: lmforge's builder (``build_model_for_data``), its
  optimizer groups (``param_groups`` + ``build_optimizer``), and ``wrap(..., compile=...)``,
  i.e. ``torch.compile(model)`` as ``pretrain.compile: true`` does; loss from ``model(ids, ids)``.
* ``hf`` (``hf-compiled``): ``GPT2LMHeadModel`` with ``attn_implementation="sdpa"``, loss from
  ``labels=ids``; the same optimizer groups as lmforge.
* ``nanogpt`` (``nanogpt-eager``): nanoGPT's ``GPT`` from ``--nanogpt DIR/model.py`` (not shipped
  here), ``bias=True``, its ``configure_optimizers`` (fused AdamW on CUDA) and ``torch.compile``
  as its train.py does; loss from ``model(x, y)``. Skipped with a JSON line when DIR is missing.

Each batch is ``seq + 1`` tokens per row: nanoGPT gets x = row[:-1], y = row[1:]; lmforge and
HF get x and shift inside (so they score seq - 1 positions per row, nanoGPT seq; the compute is
the same). Tokens per step = batch x seq for every side. Timing: warmup steps (compilation
happens there) are excluded; the timed region is bracketed by ``torch.cuda.synchronize()``
with no sync inside a step (per-step times from CUDA events; the loss is read with ``.item()``
only at the end). tokens/s = batch x seq x steps / timed wall time; MFU = tokens/s x
(6N + 12·L·C·T) / peak (``lmforge.training.flops``; dense bf16 peaks: A100 312, H100/H200 989
TFLOP/s; N counts every parameter once, positions included). ``data_wait_ms`` is the host time
per step spent taking the next pinned batch and issuing its copy. Peak memory is
``torch.cuda.max_memory_allocated`` over the timed steps. On random tokens every side's loss
should stay near ln(50304) = 10.83.

    python benchmarks/bench_gpu.py [--model gpt2-small|gpt2-medium] [--seq 1024] [--batch 16]
        [--steps 30] [--warmup 10] [--sides lmforge,lmforge-compiled,hf,nanogpt] [--nanogpt DIR]
        [--device auto|cuda|cpu] [--dtype bf16|fp32] [--tiny] [--record]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADING = "## GPU pretraining throughput"
SIDES = ("lmforge", "lmforge-compiled", "hf", "hf-compiled", "nanogpt", "nanogpt-eager")
MODELS = {"gpt2-small": dict(n_layer=12, n_head=12, d_model=768),
          "gpt2-medium": dict(n_layer=24, n_head=16, d_model=1024)}
GPT2_VOCAB = 50304  # 50257 padded to a multiple of 64, as nanoGPT
TINY = dict(n_layer=2, n_head=2, d_model=64, vocab=512, seq=64, batch=4, steps=4, warmup=2)
DEFAULTS = dict(seq=1024, batch=16, steps=30, warmup=10)
LR, BETAS, WEIGHT_DECAY, CLIP = 6e-4, (0.9, 0.95), 0.1, 1.0


def _log(msg: str) -> None:
    print(f"[bench_gpu] {msg}", file=sys.stderr, flush=True)


def shape(args) -> dict:
    """Layer count, heads, width and vocabulary of the benchmarked model."""
    if args.tiny:
        return {k: TINY[k] for k in ("n_layer", "n_head", "d_model", "vocab")}
    return {**MODELS[args.model], "vocab": GPT2_VOCAB}


def model_label(args) -> str:
    return "tiny" if args.tiny else args.model


def is_compiled(side: str) -> bool:
    return side.endswith("-compiled") or side == "nanogpt"


# -- one side, in its own process ------------------------------------------------------------

def build_side(side: str, preset: str, sh: dict, seq: int, device, nanogpt_dir: str | None):
    """(model owning the weights, loss(x, y), optimizer, notes) for one side."""
    import torch

    from lmforge.training.distributed import Dist, wrap
    from lmforge.training.optim import build_optimizer, param_groups

    compiled = is_compiled(side)
    torch.manual_seed(1337)
    notes: dict = {}
    if side.startswith("lmforge"):
        from dataclasses import replace

        from lmforge.models.config import PRESETS, ModelConfig, resolve

        if preset.startswith("gpt2") and preset in PRESETS:  # lmforge's own named GPT-2 shape, with the benchmark's window and no dropout
            cfg = replace(resolve(ModelConfig(preset=preset)), preset=None, max_seq_len=seq, dropout=0.0, vocab_size=0)
            notes["preset"] = preset
        else:
            cfg = ModelConfig(arch="decoder", n_layer=sh["n_layer"], n_head=sh["n_head"], d_model=sh["d_model"],
                              max_seq_len=seq, mlp="gelu_tanh", dropout=0.0, vocab_size=0)
        try:
            from lmforge.recipes.pretrain import build_model_for_data

            model = build_model_for_data(cfg, "decoder", "clm", {"vocab_size": sh["vocab"]}, seq)
        except ImportError as e:  # the recipe's imports missing on this machine: the same builder underneath
            from lmforge.models.transformer import build_lm

            notes["builder"] = f"build_lm (recipes.pretrain not importable: {e})"
            model = build_lm(replace(cfg, vocab_size=sh["vocab"]))
        model = model.to(device)
        groups, _ = param_groups(model, LR, WEIGHT_DECAY)
        opt = build_optimizer(groups, "adamw", LR, BETAS)
        net = wrap(model, Dist(device=device), "ddp", compile=compiled)
        return model, (lambda x, y: net(x, x)[1]), opt, notes
    if side.startswith("hf"):
        from transformers import GPT2Config, GPT2LMHeadModel

        hcfg = GPT2Config(vocab_size=sh["vocab"], n_positions=seq, n_embd=sh["d_model"], n_layer=sh["n_layer"],
                          n_head=sh["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                          bos_token_id=sh["vocab"] - 1, eos_token_id=sh["vocab"] - 1, attn_implementation="sdpa")
        model = GPT2LMHeadModel(hcfg).to(device)
        notes["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        groups, _ = param_groups(model, LR, WEIGHT_DECAY)
        opt = build_optimizer(groups, "adamw", LR, BETAS)
        net = torch.compile(model) if compiled else model
        return model, (lambda x, y: net(input_ids=x, labels=x, use_cache=False).loss), opt, notes
    # nanoGPT, from the given checkout's model.py
    import importlib.util

    path = Path(nanogpt_dir) / "model.py"
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nanogpt_model"] = mod
    spec.loader.exec_module(mod)
    gcfg = mod.GPTConfig(block_size=seq, vocab_size=sh["vocab"], n_layer=sh["n_layer"], n_head=sh["n_head"],
                         n_embd=sh["d_model"], dropout=0.0, bias=True)
    model = mod.GPT(gcfg).to(device)
    opt = model.configure_optimizers(WEIGHT_DECAY, LR, BETAS, device.type)
    net = torch.compile(model) if compiled else model
    return model, (lambda x, y: net(x, y)[1]), opt, notes


def probe_attention(loss_fn, x, y, precision, device) -> dict:
    """One eager forward with SDPA watched: does every call run causal with no materialized mask,
    and (CUDA) does the flash kernel alone accept the calls?"""
    import torch
    from torch.nn import functional as F

    calls: list[tuple[bool, bool]] = []
    original = F.scaled_dot_product_attention

    def spy(*a, **kw):
        mask = kw.get("attn_mask", a[3] if len(a) > 3 else None)
        causal = kw.get("is_causal", a[5] if len(a) > 5 else False)
        calls.append((mask is None, bool(causal)))
        return original(*a, **kw)

    F.scaled_dot_product_attention = spy
    try:
        with torch.no_grad(), precision.autocast():
            loss_fn(x, y)
    finally:
        F.scaled_dot_product_attention = original
    out = {"sdpa_calls": len(calls), "causal_no_mask": bool(calls) and all(m and c for m, c in calls)}
    if device.type == "cuda" and calls:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        try:
            with torch.no_grad(), precision.autocast(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                loss_fn(x, y)
            out["flash_ok"] = True
        except RuntimeError as e:
            out["flash_ok"] = False
            out["flash_error"] = str(e).splitlines()[0][:200]
    return out


def run_side(args) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from lmforge.models.config import ModelConfig
    from lmforge.training.flops import detect_peak, flops_per_token
    from lmforge.training.precision import Precision

    side = args.child
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dtype = args.dtype if cuda else "fp32"  # lmforge's Precision autocasts on CUDA only
    if dtype != args.dtype:
        _log(f"{side}: --dtype {args.dtype} runs as fp32 on {device.type} (autocast is CUDA-only here)")
    precision = Precision(device, dtype)
    sh, seq, batch = shape(args), args.seq, args.batch
    base = {"side": side, "gpu": torch.cuda.get_device_name(device) if cuda else "cpu", "model": model_label(args),
            "seq": seq, "batch": batch, "dtype": dtype, "compiled": is_compiled(side), "torch": torch.__version__}

    # the same batches for every side: (steps, batch, seq + 1) from one seeded generator, pinned
    n = args.warmup + args.steps
    g = torch.Generator().manual_seed(args.seed)
    host = torch.randint(0, sh["vocab"], (n, batch, seq + 1), generator=g, dtype=torch.long)
    if cuda:
        host = host.pin_memory()

    if side.startswith("nanogpt"):
        try:
            with contextlib.redirect_stdout(sys.stderr):
                model, loss_fn, opt, notes = build_side(side, model_label(args), sh, seq, device, args.nanogpt)
        except Exception as e:  # noqa: BLE001 - any import/construction failure of the peer checkout
            return {"side": side, "skipped": f"nanoGPT not importable from {args.nanogpt}: {type(e).__name__}: {e}"}
    else:
        model, loss_fn, opt, notes = build_side(side, model_label(args), sh, seq, device, args.nanogpt)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in model.parameters())
    shape_cfg = ModelConfig(n_layer=sh["n_layer"], n_head=sh["n_head"], d_model=sh["d_model"])
    fpt = flops_per_token(shape_cfg, n_params, seq)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else detect_peak(device)
    fused = any(gr.get("fused") for gr in opt.param_groups) or bool(opt.defaults.get("fused"))

    wait = [0.0]

    def batch_at(i: int):
        t = time.perf_counter()
        d = host[i].to(device, non_blocking=True)
        wait[0] += time.perf_counter() - t
        return d[:, :-1].contiguous(), d[:, 1:].contiguous()

    def step(x, y):
        with precision.autocast():
            loss = loss_fn(x, y)
        precision.backward(loss)
        precision.step(opt, params, CLIP)
        return loss.detach()

    attention = probe_attention(loss_fn if not is_compiled(side) else _eager_loss(side, model),
                                *batch_at(0), precision, device)
    _log(f"{side}: {n_params / 1e6:.1f}M params on {base['gpu']}, attention {attention}; warmup {args.warmup} steps")
    t0 = time.perf_counter()
    first = None
    for i in range(args.warmup):
        loss = step(*batch_at(i))
        first = loss if first is None else first
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    warmup_s = time.perf_counter() - t0
    _log(f"{side}: warmup (compilation included) {warmup_s:.1f} s; timing {args.steps} steps")

    wait[0] = 0.0
    marks: list = []
    t0 = time.perf_counter()
    if cuda:
        marks.append(torch.cuda.Event(enable_timing=True))
        marks[0].record()
    cpu_times = []
    loss = None
    for i in range(args.warmup, n):
        ts = time.perf_counter()
        loss = step(*batch_at(i))
        if cuda:
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[-1].record()
        else:
            cpu_times.append(time.perf_counter() - ts)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    per_step = ([marks[i].elapsed_time(marks[i + 1]) for i in range(len(marks) - 1)] if cuda
                else [1000 * t for t in cpu_times])
    first = first if first is not None else loss
    tokens_per_s = batch * seq * args.steps / wall
    return {**base, "params": n_params, "ms_per_step": statistics.median(per_step),
            "ms_per_step_mean": 1000 * wall / args.steps, "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * fpt / peak if peak else None, "peak_mem_gb":
                torch.cuda.max_memory_allocated(device) / 1e9 if cuda else None,
            "final_loss": loss.item(), "first_loss": first.item(), "data_wait_ms": 1000 * wait[0] / args.steps,
            "warmup_s": warmup_s, "steps": args.steps, "warmup": args.warmup, "flops_per_token": fpt,
            "peak_tflops": peak / 1e12 if peak else None, "fused_adamw": fused, "attention": attention,
            "tf32": True, **notes}


def _eager_loss(side: str, model):
    """The uncompiled loss of a compiled side, for the attention probe (run before compilation)."""
    if side.startswith("lmforge"):
        return lambda x, y: model(x, x)[1]
    if side.startswith("hf"):
        return lambda x, y: model(input_ids=x, labels=x, use_cache=False).loss
    return lambda x, y: model(x, y)[1]


def child_main(args) -> None:
    out = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # library prints stay off the JSON channel
            result = run_side(args)
    except Exception as e:  # noqa: BLE001 - reported as this side's line (OOM, compile errors, ...)
        import traceback

        traceback.print_exc()
        result = {"side": args.child, "failed": f"{type(e).__name__}: {str(e)[:400]}"}
    print(json.dumps(result), file=out, flush=True)


# -- the driver: every side in turn, ratios, record ------------------------------------------

class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def run_child(side: str, args, limit: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--model", args.model,
           "--seq", str(args.seq), "--batch", str(args.batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--device", args.device, "--dtype", args.dtype, "--seed", str(args.seed)]
    if args.tiny:
        cmd.append("--tiny")
    if args.nanogpt:
        cmd += ["--nanogpt", args.nanogpt]
    if args.peak_tflops:
        cmd += ["--peak-tflops", str(args.peak_tflops)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    except (subprocess.TimeoutExpired, _Stop) as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the side and its compile workers
        proc.communicate()
        if isinstance(e, _Stop):
            raise
        return {"side": side, "failed": f"timed out after {limit:.0f} s"}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        return {"side": side, "failed": f"exit {proc.returncode} without a result after {time.time() - t0:.0f} s"}
    return json.loads(lines[-1])


def ratios(results: list[dict]) -> dict:
    ran = {r["side"]: r["tokens_per_s"] for r in results if r.get("tokens_per_s")}
    out = {}
    for side, tps in ran.items():
        vs = {f"vs_{ref}": tps / ran[ref] for ref in ("hf", "nanogpt") if ref in ran and ref != side}
        if vs:
            out[side] = vs
    return {"ratios": out, "basis": "tokens_per_s / reference side's tokens_per_s"}


def record(results: list[dict], args, command: str, path: Path) -> None:
    ran = [r for r in results if r.get("tokens_per_s")]
    if not ran:
        _log("--record: no side ran; RESULTS.md left unchanged")
        return
    r0 = ran[0]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"### {when} — {r0['gpu']}, torch {r0['torch']}, {r0['model']} ({r0['params'] / 1e6:.1f}M), "
             f"seq {r0['seq']}, batch {r0['batch']}, {r0['dtype']}, {args.steps} timed steps after {args.warmup} warmup",
             "", f"`{command}`", "",
             "| side | compiled | ms/step (median) | ms/step (mean) | tokens/s | MFU | peak mem GB "
             "| data wait ms/step | final loss | SDPA causal, no mask / flash |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in ran:
        a = r.get("attention", {})
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "—"
        mem = f"{r['peak_mem_gb']:.1f}" if r.get("peak_mem_gb") is not None else "—"
        lines.append(f"| {r['side']} | {'yes' if r['compiled'] else 'no'} | {r['ms_per_step']:.1f} "
                     f"| {r['ms_per_step_mean']:.1f} | {r['tokens_per_s']:,.0f} | {mfu} | {mem} "
                     f"| {r['data_wait_ms']:.2f} | {r['final_loss']:.3f} "
                     f"| {a.get('causal_no_mask')} / {a.get('flash_ok', '—')} |")
    rat = ratios(results)["ratios"]
    parts = [f"{s} / {ref[3:]} {v:.2f}x" for s, d in rat.items() for ref, v in d.items()]
    lines += [""] + ([f"tokens/s ratios: {', '.join(parts)}."] if parts else [])
    missing = [f"{r['side']} ({r.get('skipped') or r.get('failed')})" for r in results if not r.get("tokens_per_s")]
    if missing:
        lines.append(f"Not run: {'; '.join(missing)}.")
    block = "\n".join(lines) + "\n"

    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if HEADING not in text.splitlines():
        intro = (f"{HEADING}\n\n`benchmarks/bench_gpu.py`: GPT-2 shapes, vocabulary 50304, the same random batches "
                 "and optimizer settings for every side, bf16 autocast; MFU against the dense bf16 peak of the GPU "
                 "(A100 312, H100/H200 989 TFLOP/s), FLOPs per token 6N + 12·L·C·T. Each block is one run; its "
                 "heading names the GPU.\n\n")
        at = text.find("\n## ")  # newest sections come first in this file
        text = text[:at + 1] + intro + text[at + 1:] if at >= 0 else text.rstrip("\n") + "\n\n" + intro
    lines_all = text.split("\n")
    start = lines_all.index(HEADING)
    end = next((i for i in range(start + 1, len(lines_all)) if lines_all[i].startswith("## ")), len(lines_all))
    body = "\n".join(lines_all[:end]).rstrip("\n") + "\n\n" + block
    rest = "\n".join(lines_all[end:])
    path.write_text(body + ("\n" + rest if rest else ""))
    _log(f"recorded {len(ran)} row(s) in {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gpt2-small", choices=list(MODELS))
    ap.add_argument("--seq", type=int, default=None, help="tokens per row (default 1024; --tiny 64)")
    ap.add_argument("--batch", type=int, default=None, help="rows per step (default 16; --tiny 4)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30; --tiny 4)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first, compilation included (default 10)")
    ap.add_argument("--sides", default="lmforge,lmforge-compiled,hf,nanogpt", help=f"comma list of {', '.join(SIDES)}")
    ap.add_argument("--nanogpt", default=None, help="a nanoGPT checkout (folder holding model.py)")
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--tiny", action="store_true", help="2 layers, d 64, vocab 512, seq 64, batch 4, 4 steps (CPU checks)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the token batches")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the detected peak (TFLOP/s)")
    ap.add_argument("--side-timeout", type=float, default=300, help="seconds one side may take, then it is killed")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all sides together (later sides skipped)")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS.relative_to(ROOT)}")
    ap.add_argument("--results", default=str(RESULTS), help="the Markdown file --record appends to")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    for k, v in DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, TINY[k] if args.tiny else v)
    if args.nanogpt:
        args.nanogpt = str(Path(args.nanogpt).resolve())
    if args.child:
        child_main(args)
        return

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    bad = [s for s in sides if s not in SIDES]
    if bad:
        ap.error(f"unknown side(s) {bad}; choose from {', '.join(SIDES)}")
    command = "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:])
    signal.signal(signal.SIGTERM, _raise_stop)  # an outer `timeout` still gets the finished sides recorded
    results: list[dict] = []
    t_start = time.time()
    stopped = None
    for side in sides:
        if stopped:
            r = {"side": side, "skipped": f"not started: driver stopped ({stopped})"}
        elif side.startswith("nanogpt") and not (args.nanogpt and (Path(args.nanogpt) / "model.py").is_file()):
            r = {"side": side, "skipped": ("no --nanogpt DIR given" if not args.nanogpt else
                                           f"no model.py in {args.nanogpt}") + " (a nanoGPT checkout holding model.py)"}
        else:
            left = args.budget - (time.time() - t_start) if args.budget else math.inf
            limit = min(args.side_timeout, left)
            if left < 10:
                r = {"side": side, "skipped": f"time budget of {args.budget:.0f} s spent"}
            else:
                _log(f"running {side} (limit {limit:.0f} s)")
                try:
                    r = run_child(side, args, limit)
                except (_Stop, KeyboardInterrupt) as e:
                    stopped = str(e) or type(e).__name__
                    r = {"side": side, "failed": f"stopped by {stopped}"}
        print(json.dumps(r), flush=True)
        results.append(r)
    print(json.dumps(ratios(results)), flush=True)
    if args.record:
        record(results, args, command, Path(args.results))


if __name__ == "__main__":
    main()
