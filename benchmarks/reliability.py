"""The reliability campaign in one command: runs every fault-injection, integrity, fuzzing and
security test and prints a table per fault class (cases run, survived with nothing lost) plus
the fuzzing counts (hypothesis examples generated, failures).

    python benchmarks/reliability.py [--slow]      # --slow also runs the tests marked slow

It calls pytest on the test files below with ``--hypothesis-show-statistics`` and ``-rA`` and
reads their outcome lines; the numbers in ``benchmarks/RELIABILITY.md`` come from it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {
    "kill -9 during data prepare (12 named points)": "tests/reliability/test_kill_prepare.py",
    "kill -9 during pretraining / fine-tuning → exact resume": "tests/recipes/test_pretrain.py::test_kill9_then_resume_gives_identical_losses tests/recipes/test_finetune.py::test_kill9_then_resume_is_exact",
    "crash inside a checkpoint write": "tests/reliability/test_checkpoint_crash.py",
    "kill -9 while a published folder is replaced (fine-tuning best/, ONNX export)": "tests/recipes/test_finetune.py::test_kill9_while_best_is_replaced_loses_nothing tests/export/test_onnx.py::test_kill9_while_an_export_is_replaced_loses_nothing",
    "kill -9 of the tuner between trials → --resume": "tests/recipes/test_tune.py::test_kill9_of_the_tuner_then_resume",
    "lmforge run: kill -9 inside a stage / between stages, SIGINT then a changed key (nothing deleted)": "tests/recipes/test_run.py::test_kill_9_mid_pipeline_then_the_same_command_continues tests/recipes/test_run.py::test_kill_9_during_data_preparation_then_the_same_command_continues tests/recipes/test_run.py::test_kill_9_between_stages_then_the_same_command_finishes_identically tests/recipes/test_run.py::test_interrupt_then_a_changed_key_never_loses_work tests/recipes/test_run.py::test_a_non_resume_safe_max_steps_change_starts_over_and_says_why",
    "disk full (real tmpfs)": "tests/reliability/test_disk_full.py",
    "input files: unreadable, changing during / between runs": "tests/reliability/test_input_drift.py tests/reliability/test_unreadable_input.py",
    "SIGINT / SIGTERM → checkpoint, exit 130, resume": "tests/recipes/test_pretrain.py::test_sigint_stops_with_a_checkpoint_and_resume_is_exact tests/recipes/test_finetune.py::test_sigint_then_resume_and_rerun_guard",
    "Ctrl-C during data prepare, export and tune → exit 130, previous export intact, rerun identical, interrupted trial retried": "tests/reliability/test_ctrl_c.py tests/recipes/test_tune.py::test_ctrl_c_of_the_tuner_then_resume",
    "distill: kill -9 / Ctrl-C inside a checkpoint write → --resume exact": "tests/recipes/test_distill.py::test_a_stopped_distillation_resumes_exactly",
    "unwritable run / output folders": "tests/recipes/test_pretrain.py::test_unwritable_output_folder_is_a_clear_error",
    "near-duplicate recall and the independent leak check": "tests/data/test_leak_check.py tests/data/test_minhash_dedup.py",
    "security: no unpickling, malicious pickles refused, paths contained": "tests/test_security.py",
    "server: fuzzed requests (schemathesis), limits, API key": "tests/serving/test_fuzz.py tests/serving/test_server.py",
    "fuzzing: config loader, --set, whole data prepare, readers, cleaning": "tests/config/test_config_fuzz.py tests/reliability/test_prepare_fuzz.py tests/data/test_readers.py tests/data/test_clean_filter.py",
}


def run(spec: str, slow: bool) -> dict:
    files = spec.split()
    env = {**os.environ, **({"LMFORGE_SLOW": "1"} if slow else {})}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
           *files]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True).stdout
    counts = defaultdict(int)
    for line in out.splitlines():
        m = re.match(r"^(PASSED|FAILED|SKIPPED|ERROR) ", line)
        if m:
            counts[m.group(1).lower()] += 1
    examples = sum(int(x) for x in re.findall(r"- (\d+) passing, \d+ failing", out))
    failing = sum(int(x) for x in re.findall(r"- \d+ passing, (\d+) failing", out))
    return {**counts, "examples": examples, "failing_examples": failing}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slow", action="store_true")
    a = ap.parse_args()
    print("| fault class | cases | survived (passed) | failed | skipped | fuzz examples |")
    print("|---|---:|---:|---:|---:|---:|")
    bad = 0
    for name, spec in CLASSES.items():
        r = run(spec, a.slow)
        cases = r.get("passed", 0) + r.get("failed", 0) + r.get("error", 0)
        bad += r.get("failed", 0) + r.get("error", 0)
        print(f"| {name} | {cases} | {r.get('passed', 0)} | {r.get('failed', 0) + r.get('error', 0)} | "
              f"{r.get('skipped', 0)} | {r['examples'] or ''} |", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
