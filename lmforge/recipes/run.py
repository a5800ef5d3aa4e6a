"""``lmforge run CONFIG``: every stage one config declares, in order, skipping what is done.

Stages, in this order (a stage runs when the config declares it, or when ``pipeline.stages``
names it)::

    data          data prepare of ``data`` (a ``data`` section with sources)
    labeled_data  data prepare of ``labeled_data`` into <run>/labeled/ (reusing data's tokenizer)
    pretrain      a ``pretrain`` section
    finetune      a ``finetune`` section (it evaluates its best model on val and test)
    tune          a ``tune`` section
    distill       a ``distill`` section
    export        a verified ONNX folder (+ int8) of the last trained model (``pipeline.export``)
    serve         one smoke request to a server on the export

Each stage has a *key*: a hash of its config sections, of its inputs (sizes and times of the
source files, for data stages) and of the keys of the stages it reads from. Stamps under
``<run>/pipeline/``::

    <stage>.started.json   the key when the stage began
    <stage>.done.json      the key, wall time and result once it finished
    summary.json, summary.md

A stage whose done stamp has the current key (and whose outputs exist) is skipped; one whose
started stamp has the current key was interrupted and resumes (training from its last
checkpoint, data prepare from its per-unit markers). When the key changed, the changed keys are
printed (old → new); a training stage whose changes are all resume-safe (e.g. more
``max_steps`` with a fixed ``decay_steps``) resumes from its checkpoints, anything else starts
fresh after its earlier output is moved to ``<run>/previous/<stage>-<time>/`` (never deleted but
by ``pipeline.keep_previous``). A changed upstream stage changes the keys of what reads from it,
so those rerun. ``--from STAGE`` reruns that stage and the ones after it, ``--only STAGE`` just
that one, ``--force`` everything. An interrupted or failed stage is recorded in the summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from lmforge import faults
from lmforge.config.experiment import ExperimentConfig
from lmforge.config.schema import to_dict
from lmforge.errors import UsageError
from lmforge.layout import ensure_dir, list_checkpoints, splits_dir
from lmforge.pipeline.config import STAGES
from lmforge.kinds import get_kind, is_array_kind, kind_of_task, sources_of


def _say(msg: str) -> None:
    print(f"[run] {msg}", flush=True)


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]  # config sections (dotted) the key covers
    needs: tuple[str, ...]  # stages it reads from (their keys join its key when declared)
    outputs: Callable[[ExperimentConfig], list[Path]]  # must exist for a skip
    run: Callable[[ExperimentConfig, dict, bool, bool], dict]  # (cfg, raw, resume, progress) -> result
    folders: Callable[[ExperimentConfig], list[Path]]  # what a fresh rerun keeps aside (pipeline.previous)
    # the keys that may change while the stage still resumes from its checkpoints; () = never resumes
    resume_safe: Callable[[ExperimentConfig], tuple[str, ...]] = lambda c: ()


# -- what each stage does ------------------------------------------------------------------------


def _data(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge import api

    m = api.prepare(cfg, progress=progress)
    return {"splits": {s: v["docs"] if isinstance(v, dict) else v for s, v in m["splits"].items()},
            "manifest": str(cfg.paths.data / "manifest.json")}


def _labeled_tokenizer(cfg: ExperimentConfig):
    """The labeled set is tokenized with the pretraining corpus's tokenizer when there is one."""
    return replace(cfg.tokenizer, path=str(cfg.paths.tokenizer)) if cfg.data.sources else cfg.tokenizer


def _labeled_data(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge.data.prepare import prepare
    from lmforge.errors import writing

    paths = cfg.labeled_paths
    with writing(paths.data):
        m = prepare(cfg.labeled_data, _labeled_tokenizer(cfg), paths, seed=cfg.seed, workers=cfg.num_workers,
                    name=f"{cfg.name}-labeled", progress=progress)
    return {"splits": {s: v["docs"] for s, v in m["splits"].items()}, "manifest": str(paths.data / "manifest.json")}


def _pretrain(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge import api

    resume = resume and bool(list_checkpoints(cfg.paths.pretrain.checkpoints))
    s = api.pretrain(cfg, resume=resume, overwrite=not resume, progress=progress)
    return {"best_val_loss": s["best"]["val_loss"], "steps": s["steps"], "folder": str(cfg.paths.pretrain.root)}


def _finetune(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge import api

    resume = resume and bool(list_checkpoints(cfg.paths.finetune.checkpoints))
    s = api.finetune(cfg, resume=resume, overwrite=not resume, progress=progress)
    return {"results": s["results"], "folder": str(cfg.paths.finetune.root),
            **{k: s[k] for k in ("baselines", "comparison") if s.get(k)}}


def _tune(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge.recipes.tune import tune

    study = cfg.run_path / "tune" / "study.db"
    resume = resume and study.is_file()
    out = tune(cfg.tune, cfg.finetune, raw, name=cfg.name, seed=cfg.seed, run_dir=cfg.run_path, resume=resume,
               overwrite=not resume, data_dir=cfg.paths.finetune_data)
    return {"best_trial": out.get("number"), "best_value": out.get("value"), "best_params": out.get("params")}


def _distill(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge.recipes.distill import distill

    out = distill(cfg.distill, cfg.finetune, cfg.pretrain, cfg.model, cfg.paths, cfg.seed, name=cfg.name,
                  resume=resume, overwrite=not resume, progress=progress)
    d = out["distill"]
    return {"student": d["student"].get("val"), "speedup_batch32": d["speedup_batch32"]}


def trained_model(cfg: ExperimentConfig, declared: list[str]) -> Path:
    """The model the export and serve stages ship: the fine-tuned one, else the pretrained one."""
    if "finetune" in declared:
        return cfg.paths.finetune.root
    if "pretrain" in declared:
        return cfg.paths.pretrain.root
    raise UsageError("the export and serve stages need a trained model: declare a finetune or pretrain section")


def _export_dir(cfg: ExperimentConfig) -> Path:
    return cfg.run_path / "export" / "onnx"


def _export(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge.export.config import ExportConfig
    from lmforge.export.onnx import export_onnx
    from lmforge.export.onnx_arrays import array_model_folder, export_array_onnx
    from lmforge.export.onnx_lm import export_lm_onnx, is_lm_source

    model = trained_model(cfg, declared_stages(cfg, raw))
    ec = ExportConfig(model=str(model), quantize="int8" if cfg.pipeline.export == "onnx_int8" else None,
                      out=str(_export_dir(cfg)))
    if array_model_folder(model) is not None:  # an image or table model
        rec = export_array_onnx(ec)
    else:
        rec = export_lm_onnx(ec) if is_lm_source(str(model)) else export_onnx(ec)
    v = rec["verification"]
    diff = v.get("max_abs_diff", v.get("max_abs_logit_diff"))
    _say(f"export: ONNX of {model} → {rec['out']} (verified, max |Δ| {diff:.2e})")
    return {"folder": str(rec["out"]), "max_abs_diff": diff, "int8": (Path(rec["out"]) / "model.int8.onnx").is_file()}


def _smoke_text(cfg: ExperimentConfig, causal_lm: bool) -> str:
    if cfg.pipeline.smoke:
        return cfg.pipeline.smoke
    if causal_lm:
        return "The"
    test = splits_dir(cfg.paths.finetune_data) / "test"
    for f in sorted(test.glob("*.jsonl")) if test.is_dir() else []:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                return json.loads(line)["text"]
    return "hello"


def _serve(cfg: ExperimentConfig, raw: dict, resume: bool, progress: bool) -> dict:
    from lmforge.export.onnx_lm import is_lm_source
    from lmforge.serving.config import ServeConfig
    from lmforge.serving.server import smoke

    model = trained_model(cfg, declared_stages(cfg, raw))
    folder = _export_dir(cfg)
    onnx_file = "model.int8.onnx" if (folder / "model.int8.onnx").is_file() else "model.onnx"
    text = _smoke_text(cfg, is_lm_source(str(model)))
    payload = _smoke_payload(cfg)
    body = smoke(ServeConfig(model=str(folder), backend="onnx", onnx_file=onnx_file, port=0), text, payload)
    request = text[:200] if payload is None else json.dumps(payload)[:200]
    return {"model": str(folder / onnx_file), "request": request, "response": json.dumps(body)[:500]}


def _smoke_payload(cfg: ExperimentConfig):
    """The smoke request's body for an image/table model (a prepared image; an all-missing row), else None."""
    from lmforge.kinds import smoke_payload

    return smoke_payload(cfg.data.kind, cfg.paths.finetune_data)


def _pretrain_safe(cfg: ExperimentConfig) -> tuple[str, ...]:
    from lmforge.recipes.pretrain import resume_safe_keys

    return resume_safe_keys(cfg.pretrain)


def _finetune_safe(cfg: ExperimentConfig) -> tuple[str, ...]:
    from lmforge.recipes.finetune import RESUME_SAFE

    return RESUME_SAFE


STAGE_TABLE: dict[str, Stage] = {s.name: s for s in (
    Stage("data", ("data", "tokenizer", "seed"), (), lambda c: [c.paths.data / "manifest.json"], _data,
          lambda c: [c.paths.data, c.paths.tokenizer]),
    Stage("labeled_data", ("labeled_data", "tokenizer", "seed"), ("data",),
          lambda c: [c.labeled_paths.data / "manifest.json"], _labeled_data, lambda c: [c.labeled_paths.data]),
    Stage("pretrain", ("pretrain", "model", "seed"), ("data",), lambda c: [c.paths.pretrain.summary], _pretrain,
          lambda c: [c.paths.pretrain.root], _pretrain_safe),
    Stage("finetune", ("finetune", "model", "seed"), ("data", "labeled_data", "pretrain"),
          lambda c: [c.paths.finetune.summary, c.paths.finetune.best], _finetune,
          lambda c: [c.paths.finetune.root], _finetune_safe),
    Stage("tune", ("tune", "finetune", "model", "seed"), ("data", "labeled_data", "pretrain"),
          lambda c: [c.run_path / "tune" / "best.yaml"], _tune, lambda c: [c.run_path / "tune"]),
    Stage("distill", ("distill", "finetune", "pretrain", "model", "seed"), ("data", "labeled_data", "pretrain",
                                                                             "finetune"),
          lambda c: [c.paths.finetune.root.parent / "distill" / "distill.json"], _distill,
          lambda c: [c.paths.finetune.root.parent / "distill"]),
    Stage("export", ("pipeline.export",), ("pretrain", "finetune"), lambda c: [_export_dir(c) / "model.onnx"],
          _export, lambda c: [_export_dir(c)]),
    Stage("serve", ("pipeline.smoke",), ("export",), lambda c: [], _serve, lambda c: []),
)}
assert tuple(STAGE_TABLE) == STAGES


# -- keys and stamps -----------------------------------------------------------------------------


def declared_stages(cfg: ExperimentConfig, raw: dict) -> list[str]:
    """The stages this config runs, in pipeline order."""
    if cfg.pipeline.stages is not None:
        return [s for s in STAGES if s in cfg.pipeline.stages]
    have = {"data": bool(sources_of(cfg.data)), "labeled_data": bool(cfg.labeled_data.sources),
            **{s: s in raw for s in ("pretrain", "finetune", "tune", "distill")}}
    trained = have["pretrain"] or have["finetune"]
    serves = get_kind(cfg.data.kind).serves and kind_of_task(cfg.finetune.task).serves  # export/serve: not audio yet
    have["export"] = have["serve"] = trained and serves and cfg.pipeline.export != "none"
    return [s for s in STAGES if have[s]]


def _section(d: dict, dotted: str):
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _source_stamps(data) -> list:
    """Path, size and modification time of every file the sources name (builtins by name)."""
    from lmforge.data.sources import source_files

    out = []
    if is_array_kind(data.kind):
        for src in sources_of(data):
            for path in ([src.path, getattr(src, "labels", None)] if src.path else []):
                if path and os.path.exists(path):
                    st = os.stat(path)
                    out.append([path, st.st_size, st.st_mtime_ns])
            if getattr(src, "builtin", None):
                out.append(["builtin", src.builtin])
        return out
    for src in data.sources:
        if src.builtin:
            out.append(["builtin", src.builtin])
            continue
        for url, size, _ in source_files(src):
            out.append([url, size, os.stat(url).st_mtime_ns if os.path.exists(url) else None])
    return out


def stage_parts(cfg: ExperimentConfig, stages: list[str]) -> dict[str, dict]:
    """What each stage's key hashes: its config sections, its inputs and its upstream keys."""
    d = to_dict(cfg)
    parts: dict[str, dict] = {}
    keys: dict[str, str] = {}
    for name in stages:
        st = STAGE_TABLE[name]
        p = {"sections": {s: _section(d, s) for s in st.sections},
             "upstream": {u: keys[u] for u in st.needs if u in keys}}
        if name == "data":
            p["inputs"] = _source_stamps(cfg.data)
        elif name == "labeled_data":
            p["inputs"] = _source_stamps(cfg.labeled_data)
            p["tokenizer"] = to_dict(_labeled_tokenizer(cfg))
        parts[name] = p
        keys[name] = _hash(p)
    return parts


def _hash(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_keys(cfg: ExperimentConfig, stages: list[str]) -> dict[str, str]:
    return {name: _hash(p) for name, p in stage_parts(cfg, stages).items()}


def what_changed(before: Optional[dict], now: dict) -> tuple[list[tuple[str, object, object]], list[str]]:
    """How a stage's stamped parts differ from its parts now: the changed config keys ``(key, old,
    new)``, and lines for everything else that changed (upstream stages, input files, tokenizer).
    Both empty when the stamp predates the record of parts."""
    if before is None or "parts" not in before:
        return [], []
    from lmforge.training.checkpoint import config_changes

    old = json.loads(json.dumps(before["parts"], default=str))
    new = json.loads(json.dumps(now, default=str))
    keys = config_changes(old.get("sections", {}), new.get("sections", {}))
    ups = sorted(set(old.get("upstream", {})) | set(new.get("upstream", {})))
    other = [f"upstream stage {u} changed" for u in ups if old["upstream"].get(u) != new["upstream"].get(u)]
    if old.get("inputs") != new.get("inputs"):
        other.append("its input files changed (size or modification time)")
    if old.get("tokenizer") != new.get("tokenizer"):
        other.append("its tokenizer changed")
    return keys, other


def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)


# -- the recipe ----------------------------------------------------------------------------------


def _checked_stages(cfg: ExperimentConfig, raw: dict, from_stage: Optional[str], only: Optional[str]) -> list[str]:
    """The config's stages, with --from / --only and compare_random checked against them."""
    if from_stage and only:
        raise UsageError("give --from or --only, not both")
    stages = declared_stages(cfg, raw)
    if not stages:
        raise UsageError("this config declares no stage: give data sources, a pretrain or finetune section, ... "
                         "or list them in pipeline.stages")
    if cfg.finetune.compare_random and "finetune" not in stages:
        from lmforge.config.errors import ConfigError

        raise ConfigError([("finetune.compare_random", f"needs a finetune stage to compare against; this config's "
                                                       f"stages are {stages}")])
    for flag, name in (("--from", from_stage), ("--only", only)):
        if name is not None and name not in stages:
            raise UsageError(f"{flag} {name}: not a stage of this config; its stages are {stages}")
    return stages


def run(cfg: ExperimentConfig, raw: dict, *, from_stage: Optional[str] = None, only: Optional[str] = None,
        force: bool = False, progress: bool = True, command: str = "lmforge run CONFIG") -> dict:
    """Run the declared stages; returns ``{stage: {"status", "seconds", "result"}}`` (also in
    ``<run>/pipeline/summary.json`` and ``summary.md``, written after an interruption or a failure
    too). ``command`` is the command line to name when telling the user how to continue."""
    stages = _checked_stages(cfg, raw, from_stage, only)
    parts = stage_parts(cfg, stages)
    keys = {name: _hash(p) for name, p in parts.items()}
    stamps = ensure_dir(cfg.run_path / "pipeline", "pipeline stamps")
    first_forced = stages.index(from_stage) if from_stage else (0 if force else len(stages))
    t_run = time.time()
    _say(f"{cfg.name}: stages {' → '.join(stages)}" + (f" (only {only})" if only else "")
         + (f" (from {from_stage})" if from_stage else "") + (" (forced)" if force else ""))
    record: dict[str, dict] = {}
    for i, name in enumerate(stages):
        st = STAGE_TABLE[name]
        done_file, started_file = stamps / f"{name}.done.json", stamps / f"{name}.started.json"
        done, started = _read(done_file), _read(started_file)
        if (only and name != only) or (from_stage and i < first_forced):
            fresh = done is not None and done.get("key") == keys[name]
            record[name] = {"status": "not run" + ("" if fresh else " (not done for this config)")}
            continue
        forced = i >= first_forced or only == name
        if not forced and done and done.get("key") == keys[name] and all(p.exists() for p in st.outputs(cfg)):
            _say(f"{name}: done ({done.get('seconds', 0):.0f} s on {done.get('finished', '?')}); its config, inputs "
                 "and upstream stages are unchanged — skipped")
            record[name] = {"status": "skipped", "seconds": 0.0, "ran_seconds": done.get("seconds"),
                            "finished": done.get("finished"), "result": done.get("result")}
            continue
        if not forced and done is None and started is None and _adopt(cfg, name):
            result = {"splits": {}, "manifest": str(cfg.paths.data / "manifest.json"), "adopted": True}
            _write(done_file, {"stage": name, "key": keys[name], "parts": parts[name], "seconds": 0.0,
                               "result": result, "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
            record[name] = {"status": "skipped", "seconds": 0.0, "result": result}
            continue
        resume, kept = _plan(cfg, st, parts[name], keys[name], started, done, forced)
        done_file.unlink(missing_ok=True)
        _write(started_file, {"stage": name, "key": keys[name], "parts": parts[name],
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        t = time.time()
        try:
            result = st.run(cfg, raw, resume, progress)
        except BaseException as exc:
            from lmforge.errors import Interrupted

            stopped = isinstance(exc, (Interrupted, KeyboardInterrupt))
            record[name] = {"status": "interrupted" if stopped else "failed", "seconds": round(time.time() - t, 1),
                            "error": str(exc)[:500] or type(exc).__name__, "kept_previous": kept}
            for later in stages[i + 1:]:
                record[later] = {"status": "not run"}
            _write_summary(cfg, stamps, record, round(time.time() - t_run, 1))
            if isinstance(exc, Interrupted):
                raise Interrupted(f"{name}: {exc.what}", f"rerun `{command}` to resume it") from None
            raise
        seconds = round(time.time() - t, 1)
        _write(done_file, {"stage": name, "key": keys[name], "parts": parts[name], "seconds": seconds,
                           "result": result, "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        faults.point("run.stage_done")  # between stages: this one stamped done, the next not started
        record[name] = {"status": "resumed" if resume else "ran", "seconds": seconds, "ran_seconds": seconds,
                        "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "result": result}
        if kept:
            record[name]["kept_previous"] = kept
    total = round(time.time() - t_run, 1)
    _write_summary(cfg, stamps, record, total)
    from lmforge.reporting.render import write_report

    page = write_report(cfg.run_path)
    ran = [n for n, r in record.items() if r["status"] in ("ran", "resumed")]
    _say(f"done in {total:.0f} s: ran {ran or 'nothing'}, skipped "
         f"{[n for n, r in record.items() if r['status'] == 'skipped'] or 'nothing'}")
    _say(f"report: {page} (and {page.with_suffix('.md')})")
    return record


def _adopt(cfg: ExperimentConfig, name: str) -> bool:
    """A data folder that ``lmforge data prepare`` already wrote from this very config and these
    input files counts as the data stage done (text data: its manifest records both)."""
    if name != "data" or not get_kind(cfg.data.kind).adopts_prepared or not cfg.paths.tokenizer.is_dir():
        return False
    from lmforge.data.prepare import prepared_with

    if prepared_with(cfg.paths.data, cfg.data, cfg.tokenizer, cfg.seed) is None:
        return False
    _say("data: already prepared from this config and these input files (by lmforge data prepare) — adopted, skipped")
    return True


def _plan(cfg: ExperimentConfig, st: Stage, parts: dict, key: str, started: Optional[dict], done: Optional[dict],
          forced: bool) -> tuple[bool, Optional[str]]:
    """Whether a stage that must run resumes, and where its previous output was kept (if it was).

    Resumes: after an interruption with the same key, or when only resume-safe keys changed and the
    stage has checkpoints to resume from. Otherwise the stage starts fresh, and whatever it wrote
    before is first moved to ``<run>/previous/`` (:mod:`lmforge.pipeline.previous`) — never deleted."""
    from lmforge.pipeline.previous import prune, set_aside

    name = st.name
    before = started or done  # the started stamp is the latest attempt's (a done one is removed at start)
    if not forced and started is not None and started.get("key") == key and done is None:
        _say(f"{name}: resumed after an interruption")
        return True, None
    from lmforge.training.checkpoint import is_resume_safe

    keys, other = what_changed(before, parts)
    changes = [f"{k}: {a!r} → {b!r}" for k, a, b in keys] + other
    safe = st.resume_safe(cfg)
    only_safe = bool(safe) and not other and all(is_resume_safe(k, safe) for k, _, _ in keys)
    has_checkpoints = any(list_checkpoints(f / "checkpoints") for f in st.folders(cfg))
    if not forced and has_checkpoints and changes and only_safe:
        _say(f"{name}: resumed from its checkpoints; only resume-safe keys changed: " + "; ".join(changes))
        return True, None
    why = ("forced" if forced else "config, inputs or upstream changed" if changes
           else "first run" if before is None else "its outputs are missing" if before.get("key") == key
           else "config, inputs or upstream changed (the earlier run's stamp does not say which keys: it "
                "predates that record)")
    _say(f"{name}: {why}" + (": " + "; ".join(changes) if changes else ""))
    if not forced and has_checkpoints and changes and safe:
        _say(f"{name}: not resumed: a change other than {_safe_names(safe)} breaks an exact continuation")
    kept = set_aside(cfg.run_path, name, st.folders(cfg), _say)
    if kept is not None:
        prune(cfg.run_path, name, cfg.pipeline.keep_previous, _say)
    return False, str(kept) if kept else None


def _safe_names(safe: tuple[str, ...]) -> str:
    notable = [k for k in safe if k.endswith(("max_steps", "eval_every", "save_every", "log_every"))]
    return ", ".join(notable) + " and the like"


def _write_summary(cfg: ExperimentConfig, stamps: Path, record: dict, total: float) -> None:
    from lmforge.pipeline.previous import PREVIOUS

    summary = {"name": cfg.name, "config_hash": cfg.hash(), "stages": record, "seconds": total}
    _write(stamps / "summary.json", summary)
    lines = [f"# Run {cfg.name}", "", f"Config hash {summary['config_hash']}; {total:.0f} s in all.", "",
             "| stage | status | seconds | result |", "|---|---|---:|---|"]
    for name, r in record.items():
        res = r.get("result") if r.get("result") is not None else r.get("error")
        res = json.dumps(res, default=str) if res is not None else ""
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | {res[:300].replace('|', '/')} |")
    kept = [(n, r["kept_previous"]) for n, r in record.items() if r.get("kept_previous")]
    if kept:
        lines += ["", f"Earlier outputs kept aside (under `{PREVIOUS}/`, deleted only by `pipeline.keep_previous` or "
                      "by you):", ""] + [f"- {n}: `{k}`" for n, k in kept]
    (stamps / "summary.md").write_text("\n".join(lines) + "\n")
