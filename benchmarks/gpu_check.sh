#!/usr/bin/env bash
# Issue 11's GPU check, ONE device call from the repo root (< 8 min), e.g. run(command="bash benchmarks/gpu_check.sh",
#   carry=["benchmarks/work/nanoGPT"], timeout_s=480). Before it, copy nanoGPT's model.py into benchmarks/work/nanoGPT/
#   (git-ignored: it travels only because `carry` names it): git --git-dir=<fetch of github:karpathy/nanoGPT> show HEAD:model.py
# The GPU machine's python3 has torch + transformers; lmforge comes from this checkout. Each side is killed after 150 s,
# sides not started by 420 s are skipped, and timeout stops the driver at 450 s (finished sides are still recorded).
# Only $OUT comes back: it gets the JSON lines, the log and the RESULTS.md that --record appended to.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/bench_gpu_out}; mkdir -p "$OUT"
nvidia-smi -L
NANO=(); [ -f benchmarks/work/nanoGPT/model.py ] && NANO=(--nanogpt benchmarks/work/nanoGPT)
timeout 450 "${PY:-python3}" benchmarks/bench_gpu.py --model gpt2-small --seq 1024 --batch 16 --steps 30 --warmup 10 \
  --sides lmforge,lmforge-compiled,hf,nanogpt "${NANO[@]}" --side-timeout 150 --budget 420 --record \
  >"$OUT/bench_gpu.jsonl" 2>"$OUT/bench_gpu.log"
echo "exit $?"; tail -n 30 "$OUT/bench_gpu.log"
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
cat "$OUT/bench_gpu.jsonl"
