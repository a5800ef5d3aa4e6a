"""``lmforge tune``: hyperparameter search over any config key, with Optuna.

One linear recipe: check the search space against the config (every problem at once) → open or
resume the study (SQLite under the run folder, or any Optuna storage URL) → for each trial: ask
the sampler for values, run ``lmforge finetune|pretrain`` on the config with those values as a
fresh process (validations reported to the trial; the pruner may stop it, exit code 3), tell the
study the best validation value → write ``trials.jsonl``, ``best.yaml``, ``report.md`` and
``tune.png`` after every trial.

Outputs under ``<run>/tune/`` (or ``tune.out_dir``)::

    study.db              the Optuna study (SQLite), what ``--resume`` continues
    base.yaml             the config every trial starts from (the tune section removed)
    trials/trial_NNNN/    a trial's run folder (only the ``tune.keep_best`` best are kept)
    trials.jsonl          one line per trial: number, state, params, value, seconds, peak RSS, reason
    best.yaml             base.yaml with the best values: runnable as is
    report.md, tune.png   the table, parameter importances (4+ finished trials, 2+ parameters);
                          the plot: optimization history, each trial's validations, parallel
                          coordinates, importances

Each trial is its own process, so memory cannot grow trial after trial (each trial's peak RSS is
recorded); ``tune.n_jobs`` trials run at once with the cores divided among them.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from lmforge import faults
from lmforge.config import ConfigError
from lmforge.config.experiment import ExperimentConfig, load_config, set_path
from lmforge.evaluation.metrics import LOWER_IS_BETTER
from lmforge.config.schema import describe
from lmforge.errors import Interrupted, LmforgeError, StorageError, storage_error
from lmforge.training.checkpoint import ResumeError
from lmforge.training.trial import TRIAL_ENV, make_pruner
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.training.tune_config import ParamSpec, TuneConfig

MINIMIZE = (*LOWER_IS_BETTER, "val_loss", "val_ppl", "perplexity")  # model selection's own list, + pretraining's
PRUNED_EXIT = 3


def _say(msg: str) -> None:
    print(f"[tune] {msg}", flush=True)


def unknown_keys(space_keys) -> list[tuple[str, str]]:
    """Problems for searched keys that are not config keys (with a did-you-mean)."""
    import difflib

    keys = [k for k, *_ in describe(ExperimentConfig)]
    problems = []
    for key in space_keys:
        if key not in keys:
            hint = difflib.get_close_matches(str(key), keys, n=1)
            problems.append((f"tune.space.{key}", "no such config key" + (f"; did you mean {hint[0]!r}?" if hint else "")))
        elif key.startswith("tune."):
            problems.append((f"tune.space.{key}", "the tune section cannot search itself"))
    return problems


def check_space(raw: dict, space: dict[str, ParamSpec]) -> None:
    """Every searched key exists and accepts every value it can take (all problems at once)."""
    problems = unknown_keys(space)
    bad = {k.split("tune.space.", 1)[1] for k, _ in problems}
    for key, spec in space.items():
        if key in bad:
            continue
        values = spec.choices if spec.type == "categorical" else [spec.low, spec.high]
        for v in values:
            v = int(v) if spec.type == "int" else v
            try:
                load_config(raw=set_path(copy.deepcopy(raw), key.split("."), v))
            except ConfigError as exc:
                problems += [(f"tune.space.{key}", f"value {v!r}: {k}: {m}") for k, m in exc.problems if k == key] or \
                            [(f"tune.space.{key}", f"value {v!r} makes the config invalid: {exc.problems[0][0]}: "
                                                   f"{exc.problems[0][1]}")]
    if problems:
        raise ConfigError(problems, "the tune section")


def resolve_metric(t: TuneConfig, ft: FinetuneConfig) -> tuple[str, str]:
    """(metric, direction) of the objective."""
    metric = t.metric or ("val_loss" if t.target == "pretrain" else ft.selection_metric())
    direction = t.direction if t.direction != "auto" else ("minimize" if metric in MINIMIZE else "maximize")
    return metric, direction


def _suggest(trial, key: str, p: ParamSpec):
    if p.type == "categorical":
        return trial.suggest_categorical(key, p.choices)
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(key, p.low, p.high, log=p.log, step=None if p.log else p.step)


def _grid(space: dict[str, ParamSpec]) -> dict[str, list]:
    import numpy as np

    out = {}
    for k, p in space.items():
        if p.type == "categorical":
            out[k] = list(p.choices)
        elif p.type == "int":
            out[k] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            out[k] = [float(x) for x in np.arange(p.low, p.high + p.step / 2, p.step)]
    return out


def _sampler(t: TuneConfig, seed: int):
    import optuna

    if t.sampler == "grid":
        return optuna.samplers.GridSampler(_grid(t.space), seed=seed)
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, t.n_trials // 4)))


def _same_search(study, t: TuneConfig, metric: str, direction: str, storage: str) -> None:
    """A study remembers the search it was created for; continuing it with another one is refused
    (its trials' values would mean something else)."""
    from lmforge.config.schema import to_dict

    spec = json.loads(json.dumps({"space": {k: to_dict(p) for k, p in t.space.items()}, "metric": metric,
                                  "direction": direction}))
    saved = study.user_attrs.get("lmforge_search")
    if saved is None:
        study.set_user_attr("lmforge_search", spec)
        return
    if saved == spec:
        return
    diffs = [f"tune.space.{k}" for k in sorted(set(saved["space"]) | set(spec["space"]))
             if saved["space"].get(k) != spec["space"].get(k)]
    diffs += [f"tune.{k}" for k in ("metric", "direction") if saved.get(k) != spec.get(k)]
    raise ResumeError(f"--resume: the study in {storage} was created for another search ({', '.join(diffs)} "
                      "changed); restore the tune section as it was, or start over with --overwrite")


def tune(t: TuneConfig, ft: FinetuneConfig, raw: dict, *, name: str, seed: int, run_dir: Path, resume: bool = False,
         overwrite: bool = False, data_dir: "Path | None" = None) -> dict:
    """Run (or continue) the study named ``name``; ``raw`` is the whole config as written (what
    every trial starts from). ``data_dir``: the run's prepared data, which fine-tuning trials read
    (each trial has a run folder of its own). Returns the best trial's record."""
    base = {k: v for k, v in copy.deepcopy(raw).items() if k != "tune"}
    if t.target == "finetune" and data_dir is not None and not ft.data.data_dir and not ft.data.train_file:
        base.setdefault("finetune", {}).setdefault("data", {})["data_dir"] = str(Path(data_dir).resolve())
    check_space(base, t.space)
    metric, direction = resolve_metric(t, ft)
    out = Path(t.out_dir) if t.out_dir else Path(run_dir) / "tune"
    db = out / "study.db"
    _prepare_folder(out, db, t, base, resume, overwrite)
    storage = t.storage or f"sqlite:///{db.resolve()}"
    study, records = _open_study(t, name, storage, direction, metric, seed if t.seed is None else t.seed, out)
    n_trials = min(t.n_trials, _grid_size(t)) if t.sampler == "grid" else t.n_trials
    done_before = len(study.trials)
    if done_before:
        _say(f"resuming study {name!r}: {done_before} trial(s) recorded, {max(0, n_trials - done_before)} to go")
    threads = max(1, (os.cpu_count() or 1) // t.n_jobs)
    lock = threading.Lock()
    t0 = time.time()
    _retry_interrupted(study, records)
    stop = threading.Event()  # Ctrl-C or a full disk: no new trial starts
    storage_failure: list[str] = []  # why the study's folder or database could not be written

    def next_trial():
        with lock:
            counted = len(study.trials) - sum(r["state"] == "interrupted" for r in records.values())
            if stop.is_set() or counted >= n_trials or (t.timeout_s and time.time() - t0 > t.timeout_s):
                return None
            trial = study.ask()
            params = {k: _suggest(trial, k, p) for k, p in t.space.items()}
            return trial, params

    def worker() -> None:
        while (item := next_trial()) is not None:
            trial, params = item
            rec = _run_trial(out, t.target, trial, params, storage, name, metric, t.pruner, threads)
            if rec["state"] == "failed" and _disk_full(rec["reason"]):  # the disk's fault, not the parameters'
                rec["state"], rec["reason"] = "interrupted", "no space left on device"
                storage_failure.append(f"trial {trial.number} ran out of space in {out}: No space left on device")
                stop.set()
            if stop.is_set() and rec["state"] == "failed":  # stopped by the same Ctrl-C: tried again on --resume
                rec["state"], rec["reason"] = "interrupted", "Ctrl-C while it ran"
            with lock:
                try:
                    _finish(study, trial, rec, direction)
                    records[trial.number] = rec
                    _write_outputs(out, study, records, base, t, metric, direction)
                except Exception as exc:  # the study database or folder cannot be written (a full disk, ...)
                    why = _storage_failure(exc, db)
                    if why is None:
                        raise
                    storage_failure.append(why)
                    stop.set()
                    return
                left = max(0, n_trials - len(study.trials))
                eta = (time.time() - t0) / max(1, len(study.trials) - done_before) * left / t.n_jobs
                _say(_progress(rec, _best_record(records, direction), metric, left, eta))
            faults.point("tune.trial_done")

    stopped = _run_workers(t.n_jobs, worker, stop)
    if storage_failure:
        raise StorageError(f"{storage_failure[0]}; free some space, then continue with: lmforge tune CONFIG --resume "
                           "(finished trials are kept, the unfinished one is tried again)")
    _write_outputs(out, study, records, base, t, metric, direction)
    if stopped:
        raise Interrupted(f"tune stopped with {len(records)} trial(s) recorded in {out}",
                          "continue with --resume (an interrupted trial is tried again)")
    best = _best_record(records, direction)
    if best is None:
        reasons = sorted({r.get("reason", "?") for r in records.values()})
        raise LmforgeError(f"all {len(records)} trials failed or were pruned; reasons: {reasons[:3]}; see {out}/trials.jsonl")
    _say(f"best: trial {best['number']}, {metric} {_fmt(best['value'])}, {json.dumps(best['params'])} → {out / 'best.yaml'}")
    return best


def _prepare_folder(out: Path, db: Path, t: TuneConfig, base: dict, resume: bool, overwrite: bool) -> None:
    """The study's folder: refused or cleared when it holds an earlier study and this is no resume."""
    if out.exists() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise ResumeError(f"{out} already holds a study: continue it with --resume, or start over with --overwrite")
        shutil.rmtree(out)
    if resume and t.storage is None and not db.exists():
        raise ResumeError(f"--resume: no study at {db}")
    (out / "trials").mkdir(parents=True, exist_ok=True)
    (out / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))


def _open_study(t: TuneConfig, name: str, storage: str, direction: str, metric: str, seed: int, out: Path):
    """The Optuna study (created, or loaded and checked to be the same search) and the trial records
    so far; trials a stopped tuner left running become "interrupted" records, tried again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, sampler=_sampler(t, seed),
                                pruner=make_pruner(t.pruner), load_if_exists=True)
    _same_search(study, t, metric, direction, storage)
    if study.trials:  # resumed: a sampler seeded as before would replay the draws of the trials already run
        study.sampler = _sampler(t, seed + len(study.trials))
    records: dict[int, dict] = {r["number"]: r for r in _read_records(out)}
    for tr in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # left running by a tuner that was killed or could not write: not the parameters' fault
        _tell(study, tr.number, state=optuna.trial.TrialState.FAIL)
        records[tr.number] = {"number": tr.number, "params": tr.params, "state": "interrupted", "value": None,
                              "reason": "running when the tuner stopped",
                              "run_dir": str(out / "trials" / f"trial_{tr.number:04d}")}
        _say(f"trial {tr.number} was running when the tuner stopped: its parameters are tried again")
    return study, records


def _progress(rec: dict, best: "dict | None", metric: str, left: int, eta: float) -> str:
    best_txt = f"{_fmt(best['value'])} (trial {best['number']})" if best else "none yet"
    return (f"trial {rec['number']} {rec['state']}: {metric} {_fmt(rec.get('value'))} {json.dumps(rec['params'])} "
            f"({rec['seconds']:.1f} s) — best {best_txt}; {left} left, ETA {eta:.0f} s")


def _disk_full(reason: str) -> bool:
    """A trial's last log lines say its disk was full (or over quota)."""
    return "No space left on device" in reason or "Disk quota exceeded" in reason or "disk is full" in reason


def _storage_failure(exc: Exception, db: Path) -> "str | None":
    """Why the tuner could not record a trial, when the disk is to blame (a disk-full / read-only /
    permission OSError, or Optuna's storage error over SQLite's "database or disk is full"); None for
    anything else."""
    e: "BaseException | None" = exc
    while e is not None:
        err = storage_error(e, db.parent) if isinstance(e, OSError) else None
        if err is not None:
            return str(err).split("; ")[0]  # "cannot write PATH: <reason>"; the advice is the tuner's own
        if _disk_full(str(e)):
            return f"cannot write the study database {db}: database or disk is full (No space left on device)"
        e = e.__cause__ or e.__context__
    return None


def _grid_size(t: TuneConfig) -> int:
    n = 1
    for values in _grid(t.space).values():
        n *= len(values)
    return n


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def _run_trial(out: Path, target: str, trial, params: dict, storage: str, study: str, metric: str, pruner: str,
               threads: int) -> dict:
    """Run one trial as a fresh process; its record (state, value comes from the study later)."""
    run_dir = out / "trials" / f"trial_{trial.number:04d}"
    sets = [f"run_dir={run_dir}", f"{target}.{'loop.' if target == 'finetune' else ''}threads={threads}"]
    sets += [f"{k}={json.dumps(v)}" for k, v in params.items()]
    cmd = [sys.executable, "-m", "lmforge", target, str(out / "base.yaml"), "--overwrite", "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, TRIAL_ENV: json.dumps({"storage": storage, "study": study, "trial_id": trial._trial_id,
                                                "metric": metric, "pruner": pruner})}
    env.pop("LMFORGE_FAULT", None)  # fault points name the tuner's own moments, not its trials'
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(run_dir / "log.txt", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
    rec = {"number": trial.number, "params": params, "seconds": round(time.time() - t0, 2),
           "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "run_dir": str(run_dir), "exit_code": proc.returncode}
    if proc.returncode == 0:
        rec["state"] = "complete"
    elif proc.returncode == PRUNED_EXIT:
        rec["state"] = "pruned"
    else:
        tail = (run_dir / "log.txt").read_text(errors="replace").strip().splitlines()[-3:]
        rec["state"], rec["reason"] = "failed", " | ".join(tail)[-500:] or f"exit code {proc.returncode}"
    return rec


def _tell(study, *args, **kw) -> None:
    """``study.tell``; the grid sampler asks to stop the study when its grid is used up, which
    Optuna only allows inside ``optimize`` — the trial is recorded before that, so it is ignored."""
    try:
        study.tell(*args, **kw)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _run_workers(n_jobs: int, worker, stop: threading.Event) -> bool:
    """Run ``worker`` on ``n_jobs`` threads until they finish; True when a Ctrl-C stopped them (then
    ``stop`` is set, so no new trial starts, and the running trials, which got the same signal as
    one process group, are waited for)."""
    pool = ThreadPoolExecutor(n_jobs)
    futures = [pool.submit(worker) for _ in range(n_jobs)]
    try:
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        stop.set()
        _say("Ctrl-C: no new trial starts; waiting for the running trial(s) to stop")
        pool.shutdown(wait=True)
        return True
    pool.shutdown(wait=True)
    return False


def _retry_interrupted(study, records: dict[int, dict]) -> None:
    """Queue the parameters of trials a Ctrl-C stopped, so a resumed study tries them again
    (once: a record notes that it was queued)."""
    for rec in records.values():
        if rec["state"] == "interrupted" and not rec.get("queued_again"):
            study.enqueue_trial(rec["params"])
            rec["queued_again"] = True


def _finish(study, trial, rec: dict, direction: str) -> None:
    """Tell the study how the trial ended; its value is its best reported validation value."""
    import optuna

    reported = study.get_trials(deepcopy=False)[trial.number].intermediate_values
    if rec["state"] == "complete" and not reported:
        rec["state"], rec["reason"] = "failed", "no validation metric was reported (a validation set and eval_every?)"
    if rec["state"] == "complete":
        rec["value"] = (max if direction == "maximize" else min)(reported.values())
        _tell(study, trial, rec["value"])
    elif rec["state"] == "pruned":
        rec["value"] = None
        rec["pruned_at_step"] = max(reported) if reported else None
        _tell(study, trial, state=optuna.trial.TrialState.PRUNED)
    else:
        rec["value"] = None
        trial.set_user_attr("reason", rec["reason"])
        _tell(study, trial, state=optuna.trial.TrialState.FAIL)


def _read_records(out: Path) -> list[dict]:
    path = out / "trials.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _best_record(records: dict[int, dict], direction: str):
    done = [r for r in records.values() if r["state"] == "complete" and r.get("value") is not None]
    if not done:
        return None
    return (max if direction == "maximize" else min)(done, key=lambda r: r["value"])


def _write_outputs(out: Path, study, records: dict[int, dict], base: dict, t: TuneConfig, metric: str,
                   direction: str) -> None:
    rows = [records[n] for n in sorted(records)]
    tmp = out / "trials.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, out / "trials.jsonl")
    done = sorted((r for r in rows if r["state"] == "complete"), key=lambda r: r["value"],
                  reverse=direction == "maximize")
    keep = {r["run_dir"] for r in done[:t.keep_best]}
    for r in rows:  # disk stays bounded: only the best trial folders survive
        if r["run_dir"] not in keep and Path(r["run_dir"]).exists() and r["state"] != "running":
            shutil.rmtree(r["run_dir"], ignore_errors=True)
    if done:
        best = copy.deepcopy(base)
        for k, v in done[0]["params"].items():
            set_path(best, k.split("."), v)
        best.pop("run_dir", None)
        (out / "best.yaml").write_text(f"# lmforge tune: best of {len(rows)} trials, {metric} {done[0]['value']:.6g} "
                                       f"(trial {done[0]['number']})\n" + yaml.safe_dump(best, sort_keys=False))
    curves = {t.number: dict(t.intermediate_values) for t in study.trials if t.intermediate_values}
    _report(out, rows, metric, direction, _importances(study, rows), curves)


def _importances(study, rows: list[dict]) -> dict[str, float]:
    """Parameter importances (Optuna's default fANOVA) once there are enough finished trials."""
    import optuna

    done = [r for r in rows if r["state"] == "complete"]
    keys = {k for r in done for k in r["params"]}
    if len(done) < 4 or len(keys) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):  # e.g. every finished trial has the same values
        return {}


def _report(out: Path, rows: list[dict], metric: str, direction: str, importances: dict[str, float],
            curves: dict[int, dict[int, float]]) -> None:
    keys = sorted({k for r in rows for k in r["params"]})
    lines = [f"# Tuning: {metric} ({direction})", "", f"{len(rows)} trials: "
             + ", ".join(f"{s} {sum(r['state'] == s for r in rows)}" for s in ("complete", "pruned", "failed")), "",
             "| trial | state | " + " | ".join(keys) + f" | {metric} | seconds | peak RSS MB |",
             "|---:|---|" + "---|" * len(keys) + "---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['number']} | {r['state']} | " + " | ".join(f"{r['params'].get(k)}" for k in keys)
                     + f" | {_fmt(r.get('value'))} | {r.get('seconds', '—')} | {r.get('peak_rss_mb', '—')} |")
    failed = [r for r in rows if r["state"] == "failed"]
    if failed:
        lines += ["", "## Failed trials", ""] + [f"- trial {r['number']}: {r['reason']}" for r in failed]
    if importances:
        lines += ["", "## Parameter importance (fANOVA)", "", "| parameter | importance |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importances.items()]
    lines += ["", "![history, validation curves, parallel coordinates, parameter weights](tune.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    _plot(out / "tune.png", rows, keys, metric, direction, importances, curves)


def _plot(path: Path, rows: list[dict], keys: list[str], metric: str, direction: str, importances: dict[str, float],
          curves: dict[int, dict[int, float]]) -> None:
    """Four panels: optimization history, each trial's validations (pruned ones dashed), parallel
    coordinates of the finished trials (colour = metric), parameter importances."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0][0]
    xs = [r["number"] for r in rows if r.get("value") is not None]
    ys = [r["value"] for r in rows if r.get("value") is not None]
    ax.scatter(xs, ys, label="complete", color="tab:blue")
    best, run = [], None
    for y in ys:
        run = y if run is None else (max(run, y) if direction == "maximize" else min(run, y))
        best.append(run)
    ax.plot(xs, best, color="tab:orange", label="best so far")
    pruned = [r["number"] for r in rows if r["state"] == "pruned"]
    if pruned and ys:
        ax.scatter(pruned, [min(ys)] * len(pruned), marker="x", color="tab:gray", label="pruned")
    ax.set(xlabel="trial", ylabel=metric, title="optimization history")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    state = {r["number"]: r["state"] for r in rows}
    for n, c in sorted(curves.items()):
        steps = sorted(c)
        ax.plot(steps, [c[s] for s in steps], ls="--" if state.get(n) == "pruned" else "-", marker=".", lw=1,
                label=f"{n}" if len(curves) <= 12 else None)
    ax.set(xlabel="step", ylabel=metric, title="validations per trial (dashed: pruned)")
    if curves and len(curves) <= 12:
        ax.legend(fontsize=7, ncol=2, title="trial", title_fontsize=7)

    ax = axes[1][0]
    done = [r for r in rows if r["state"] == "complete" and r.get("value") is not None]
    if done and keys:
        def axis(k):  # each parameter scaled to [0, 1]; log scale when it spans 2+ decades; categories by order
            vals = [r["params"].get(k) for r in done]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                lo, hi = min(vals), max(vals)
                if lo > 0 and hi / lo >= 100:
                    vals, lo, hi = [math.log10(v) for v in vals], math.log10(lo), math.log10(hi)
                return [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in vals]
            order = sorted({str(v) for v in vals})
            return [order.index(str(v)) / max(1, len(order) - 1) for v in vals]
        cols = [axis(k) for k in keys]
        vs = [r["value"] for r in done]
        lo, hi = min(vs), max(vs)
        cmap = plt.get_cmap("viridis" if direction == "maximize" else "viridis_r")
        for i, v in enumerate(vs):
            ax.plot(range(len(keys)), [c[i] for c in cols], color=cmap((v - lo) / (hi - lo) if hi > lo else 1.0),
                    alpha=0.8, marker="o", ms=3)
        ax.set_xticks(range(len(keys)), [k.split(".")[-1] for k in keys], fontsize=8)
        ax.set_yticks([0, 1], ["low", "high"])
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
        fig.colorbar(sm, ax=ax, label=metric)
    ax.set_title("parallel coordinates (finished trials)")

    ax = axes[1][1]
    if importances:
        names = list(importances)[::-1]
        ax.barh([n.split(".")[-1] for n in names], [importances[n] for n in names], color="tab:green")
        ax.set(xlabel="importance (fANOVA)", title="parameter importance")
    else:
        ax.text(0.5, 0.5, "importances need 4+ finished trials\nand 2+ parameters", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
