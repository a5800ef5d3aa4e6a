"""The report's content as plain blocks (text, table, figure), one section per stage that ran —
rendered to HTML and to Markdown from the same list, so the two cannot disagree."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from lmforge.kinds import data_section
from lmforge.reporting import figures
from lmforge.reporting.facts import RunFacts


@dataclass
class Block:
    form: str  # "text" | "table" | "figure" | "code" (how the block is shown)
    text: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    png: bytes = b""
    name: str = ""  # figure file name (Markdown) / anchor
    source: str = ""  # the file the numbers come from (relative to the run folder)


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def text(self, s: str) -> None:
        self.blocks.append(Block("text", text=s))

    def table(self, headers: list[str], rows: list[list], source: str = "") -> None:
        if rows:
            self.blocks.append(Block("table", headers=headers, rows=[[_cell(c) for c in r] for r in rows],
                                     source=source))

    def figure(self, name: str, png: Optional[bytes], caption: str, source: str) -> None:
        if png:
            self.blocks.append(Block("figure", png=png, name=name, text=caption, source=source))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return "" if v is None else str(v)


def _overview(f: RunFacts) -> Section:
    s = Section("overview", "Run")
    p = f.pipeline
    if p:
        s.text(f"Run **{p.get('name')}**, config hash `{p.get('config_hash')}`, {p.get('seconds', 0):.0f} s for the last "
               "`lmforge run`.")
        s.table(["stage", "status (last run)", "seconds (when it ran)", "finished"],
                [[k, v.get("status"), v.get("ran_seconds", v.get("seconds", "")), v.get("finished", "")]
                 for k, v in (p.get("stages") or {}).items()], "pipeline/summary.json")
    else:
        s.text("No `lmforge run` summary in this folder: the sections below come from the stages' own files.")
    return s


def _data(f: RunFacts, manifest: dict, sid: str, title: str, prefix: str) -> Section:
    s = Section(sid, title)
    src = f"{prefix}manifest.json"
    steps = manifest.get("steps") or {}
    s.table(["step", "read", "kept", "dropped", "why"],
            [[k, v.get("read"), v.get("kept"), sum((v.get("dropped") or {}).values()),
              ", ".join(f"{r}: {n:,}" for r, n in (v.get("dropped") or {}).items())] for k, v in steps.items()], src)
    splits = manifest.get("splits") or {}
    s.table(["split", "documents", "characters", "tokens", "truncated"],
            [[k, v.get("docs"), v.get("chars"), v.get("tokens"), v.get("truncated")] for k, v in splits.items()], src)
    leak = manifest.get("leak_check") or {}
    if leak:
        s.text(f"Leak check (independent MinHash index, threshold {leak.get('threshold')}): {leak.get('found', 0)} "
               f"pairs found across splits, {leak.get('moved_docs', 0)} documents moved (`on_leak: {leak.get('on_leak')}`).")
    s.figure(f"{sid}_lengths", figures.length_histograms(manifest), "Document lengths per split", src)
    s.figure(f"{sid}_labels", figures.label_distribution(manifest), "Label distribution per split", src)
    rej = f.rejected.get("labeled" if sid == "labeled" else "data") or []
    s.table(["reason", "where", "text"], [[r["reason"], r["where"], r["text"]] for r in rej], f"{prefix}rejected/")
    tok = manifest.get("tokenizer") or {}
    if tok:
        s.text(f"Tokenizer: vocabulary {tok.get('vocab_size'):,}, "
               + ("trained on the train split" if tok.get("trained") else f"loaded from `{tok.get('source')}`")
               + (f", {tok['chars_per_token_train']} characters per token on train" if "chars_per_token_train" in tok
                  else "") + f"; special ids {json.dumps(tok.get('special_ids'))}.")
        st = tok.get("sample_stats") or {}
        s.table(["split", "documents sampled", "tokens per word", "unknown-token rate"],
                [[k, v["documents"], v["tokens_per_word"], v["unknown_rate"]] for k, v in st.items() if k != "top_tokens"],
                src)
        if st.get("top_tokens"):
            s.text("Most frequent tokens on train: " + ", ".join(f"`{t}` {n:,}" for t, n in st["top_tokens"][:20]) + ".")
    return s


def text_data(f: RunFacts, manifest: dict) -> Section:
    """``data.kind: text``: the pretraining corpus."""
    return _data(f, manifest, "data", "Data (pretraining corpus)", "data/")


def image_data(f: RunFacts, manifest: dict) -> Section:
    """``data.kind: image``: counts with reasons, split sizes, classes, normalization, sample grids."""
    s = Section("data", "Data (images)")
    c = manifest.get("counts") or {}
    s.text(f"Read {c.get('read', 0):,} images, kept {c.get('kept', 0):,}, shape {manifest.get('shape')}.")
    _array_counts(s, manifest)
    norm = manifest.get("normalize") or {}
    s.text(f"Normalization `{norm.get('kind')}` fit on the train split only: mean {norm.get('mean')}, std {norm.get('std')}.")
    return _array_figures(s, f)


def table_data(f: RunFacts, manifest: dict) -> Section:
    """``data.kind: tabular``: counts with reasons, split sizes, classes, missing values before and after."""
    s = Section("data", "Data (table)")
    c = manifest.get("counts") or {}
    s.text(f"Read {c.get('read', 0):,} rows, kept {c.get('kept', 0):,}; task {manifest.get('task')} of "
           f"`{manifest.get('target')}` from {len(manifest.get('feature_names') or [])} features.")
    _array_counts(s, manifest)
    before, after = manifest.get("missing_before") or {}, manifest.get("missing_after") or {}
    if before.get("train"):
        cols = list(before["train"])
        s.table(["column", *(f"missing in {k} (before → after)" for k in before)],
                [[col, *(f"{before[k].get(col, 0)} → {(after.get(k) or {}).get(col, 0)}" for k in before)] for col in cols],
                "data/manifest.json")
    return _array_figures(s, f)


def _array_counts(s: Section, manifest: dict) -> None:
    src = "data/manifest.json"
    c = manifest.get("counts") or {}
    s.table(["reason", "count"], [[k, v] for k, v in (c.get("rejected_by_reason") or {}).items()], src)
    classes = manifest.get("class_counts") or {}
    labels = manifest.get("labels") or []
    s.table(["split", "rows", *(labels if classes and len(labels) <= 12 else [])],
            [[k, n, *([classes.get(k, {}).get(lab, 0) for lab in labels] if classes and len(labels) <= 12 else [])]
             for k, n in (manifest.get("splits") or {}).items()], src)


def _array_figures(s: Section, f: RunFacts) -> Section:
    for rel, caption in (("data/samples.png", "Training images"), ("data/augment_grid.png", "Augmentation (first column: original)"),
                         ("data/missingness.png", "Missing values per column, before and after imputation")):
        s.figure(rel.split("/")[1].split(".")[0], f.pngs.get(rel), caption, rel)
    rej = f.rejected.get("data") or []
    s.table(["reason", "where", "detail"], [[r["reason"], r["where"], r["text"]] for r in rej], "data/rejected/")
    return s


def _pretrain(f: RunFacts) -> Section:
    s = Section("pretrain", "Pretraining")
    p = f.pretrain or {}
    best = p.get("best") or {}
    s.table(["steps", "stop reason", "best val loss", "best checkpoint", "last train loss"],
            [[p.get("steps"), p.get("stop_reason"), best.get("val_loss"), best.get("name"), p.get("last_train_loss")]],
            "pretrain/summary.json")
    s.figure("pretrain_curves", figures.training_curves(f.pretrain_metrics, [
        ("train", "loss", "train loss"), ("eval", "val_loss", "validation loss"), ("eval", "val_ppl", "validation perplexity"),
        ("train", "lr", "learning rate"), ("train", "grad_norm", "gradient norm"), ("train", "tokens_per_s", "tokens / s"),
        ("train", "mfu", "MFU (estimate)"), ("train", "data_wait_s", "data wait s per log interval"),
        ("train", "images_per_s", "images / s")],
        "pretraining"), "Pretraining curves", "pretrain/metrics.jsonl")
    s.figure("reconstructions", f.pngs.get("pretrain/reconstructions.png"),
             "Masked-image pretraining: validation images, the patches the encoder saw, and the decoder's rebuild",
             "pretrain/reconstructions.png")
    samples = [r for r in f.pretrain_metrics if r.get("kind") == "sample"]
    if samples:
        s.text(f"Greedy continuation of the same validation prompt at each validation (prompt: "
               f"“{samples[0].get('prompt', '')}”):")
        s.table(["step", "text"], [[r["step"], r.get("text", "")] for r in samples], "pretrain/metrics.jsonl")
    return s


def _finetune(f: RunFacts) -> Section:
    s = Section("finetune", "Fine-tuning and evaluation")
    ft = f.finetune or {}
    s.table(["start", "labels", "train examples", "steps", "best step", "selection metric", "train s"],
            [[ft.get("start"), ", ".join(ft.get("labels") or []), ft.get("train_examples"), ft.get("steps_done"),
              ft.get("best_step"), ft.get("selection_metric"), ft.get("train_seconds")]], "finetune/summary.json")
    s.figure("finetune_curves", figures.training_curves(f.finetune_metrics, [
        ("train", "loss", "train loss"), ("eval", "loss", "validation loss"), ("eval", "accuracy", "validation accuracy"),
        ("eval", "f1_macro", "validation macro-F1"), ("eval", "entity_f1", "validation entity F1"),
        ("train", "lr", "learning rate")], "fine-tuning"), "Fine-tuning curves", "finetune/metrics.jsonl")
    comp = ft.get("comparison")
    if comp:
        n = len(comp["seeds"])
        s.text(f"**Pretrained start vs random init** ({comp['metric']}, {n} seed(s) per side; the same fine-tuning "
               "from random init on the same split):")
        s.table(["split", "pretrained mean", "min", "max", "random mean", "min", "max", "gain (points)", "seeds won"],
                [[split, r["own"]["mean"], r["own"]["min"], r["own"]["max"], r["random"]["mean"], r["random"]["min"],
                  r["random"]["max"], round(100 * r["gain"], 2), f"{r['own_wins']}/{n}"]
                 for split, r in comp["splits"].items()], "finetune/summary.json")
    base = ft.get("baselines") or {}
    if base:
        s.text("**Classical baselines** fitted on the same training split (majority class; TF-IDF word 1–2-grams + "
               "logistic regression, C by 3-fold cross-validation on train):")
        s.table(["model", *[f"{split} accuracy" for split in f.evals], *[f"{split} macro F1" for split in f.evals]],
                [["this model", *[m.get("accuracy") for m in f.evals.values()],
                  *[m.get("f1_macro") for m in f.evals.values()]]]
                + [[name, *[b.get(split, {}).get("accuracy") for split in f.evals],
                    *[b.get(split, {}).get("f1_macro") for split in f.evals]] for name, b in base.items()],
                "finetune/summary.json")
    for split, m in f.evals.items():
        src = f"finetune/eval/{split}/metrics.json"
        keys = [k for k in ("examples", "accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro",
                            "recall_macro", "roc_auc", "ece", "entity_precision", "entity_recall", "entity_f1",
                            "tag_accuracy", "rmse", "mae", "r2", "loss") if m.get(k) is not None]
        s.text(f"**{split}** (best model):")
        s.table(keys, [[m[k] for k in keys]], src)
        s.table(["class", "precision", "recall", "F1", "support"],
                [[k, v["precision"], v["recall"], v["f1"], v["support"]] for k, v in (m.get("per_class") or {}).items()],
                src)
        s.table(["entity type", "precision", "recall", "F1", "support"],
                [[k, v["precision"], v["recall"], v["f1"], v["support"]] for k, v in (m.get("per_type") or {}).items()],
                src)
        if split in f.confusion_png:
            s.figure(f"confusion_{split}", f.confusion_png[split], f"Confusion matrix, {split} (rows = gold)",
                     f"finetune/eval/{split}/confusion_matrix.png")
        s.figure(f"roc_pr_{split}", figures.roc_pr(m), f"ROC and precision-recall, {split}", src)
        s.figure(f"reliability_{split}", figures.reliability(m), f"Calibration, {split}", src)
        for name, caption in (("mistakes", f"Most confident mistakes, {split} (gold→predicted, confidence)"),
                              ("residuals", f"Predicted vs true, {split}")):
            rel = f"finetune/eval/{split}/{name}.png"
            s.figure(f"{name}_{split}", f.pngs.get(rel), caption, rel)
        s.table(["line", "gold", "predicted", "confidence", "text"],
                [[x.get("line", x.get("id")), x["gold"], x["predicted"], x["confidence"], x.get("text", "")]
                 for x in (m.get("confident_mistakes") or [])[:10]], src)
    return s


def _tune(f: RunFacts) -> Section:
    s = Section("tune", "Hyperparameter search")
    keys = sorted({k for t in f.tune for k in t.get("params", {})})
    s.table(["trial", "state", *keys, "value", "seconds"],
            [[t["number"], t["state"], *[t["params"].get(k) for k in keys], t.get("value"), t.get("seconds")]
             for t in f.tune], "tune/trials.jsonl")
    s.figure("tune_history", figures.tune_history(f.tune), "Trials", "tune/trials.jsonl")
    return s


def _transfer(f: RunFacts) -> Section:
    s = Section("transfer", "Transfer: metric vs number of labels")
    keys = [k for k in ("start", "labels_requested", "seed", "train_examples", "metric", "value", "tfidf_logreg",
                        "seconds")
            if any(k in r for r in f.transfer)]
    s.table(keys, [[r.get(k) for k in keys] for r in f.transfer], "transfer/results.jsonl")
    if f.transfer_png is not None:
        s.figure("transfer", f.transfer_png, "Metric vs number of labels, per start",
                 "transfer/transfer.png")
    return s


def _distill(f: RunFacts) -> Section:
    s = Section("distill", "Distillation")
    d = f.distill or {}
    s.table(["", "layers", "parameters", "non-embedding", "batch-1 ms", "batch-32 ms", "validation"],
            [[side, d[side].get("layers"), d[side].get("params"), d[side].get("non_embedding_params"),
              d[side].get("latency_ms_batch1"), d[side].get("latency_ms_batch32"), d[side].get("val")]
             for side in ("teacher", "student") if side in d], "distill/distill.json")
    return s


def _export(f: RunFacts) -> Section:
    s = Section("export", "Export")
    e = f.export or {}
    rel = str(f.export_dir.relative_to(f.run_dir)) if f.export_dir else "export"
    v = e.get("verification") or {}
    diff = v.get("max_abs_diff", v.get("max_abs_logit_diff"))
    s.text(f"ONNX folder `{rel}` ({e.get('exporter', '')}); verified against PyTorch on {len(v.get('checks') or [])} "
           f"checks, largest |Δ| {diff if diff is not None else 'n/a'} (tolerance {v.get('tolerance', 'n/a')}).")
    q = e.get("quality") or {}
    s.table(["graph", q.get("metric", "metric"), "batch-1 ms", "Δ points", "speed-up vs torch"],
            [[side, q[side].get(q.get("metric", "")), q[side].get("latency_ms_batch1"), q[side].get("delta_points"),
              q[side].get("speedup_vs_torch")] for side in ("torch_fp32", "onnx_fp32", "onnx_int8") if side in q],
            f"{rel}/export.json")
    return s


def _lineage(f: RunFacts) -> Section:
    s = Section("lineage", "Lineage")
    s.text("Every number above comes from these files (paths relative to the run folder).")
    s.table(["file", "bytes", "sha256"], [[k, v["bytes"], v["sha256"][:16]] for k, v in sorted(f.sources.items())])
    env = f.environment
    s.table(["package", "version"], [[k, v] for k, v in env.get("versions", {}).items()])
    s.text(f"Machine: {env.get('machine')}. Run folder: `{env.get('run_dir')}`.")
    for stage, text in f.configs.items():
        s.text(f"Resolved configuration of {stage} (`{stage}/config.yaml`):")
        s.blocks.append(Block("code", text=text, source=f"{stage}/config.yaml"))
    return s


def build(f: RunFacts) -> list[Section]:
    out = [_overview(f)]
    if f.data:
        out.append(data_section(f.data.get("kind", "text"))(f, f.data))
    if f.labeled:
        out.append(_data(f, f.labeled, "labeled", "Labeled data", "labeled/data/"))
    if f.pretrain:
        out.append(_pretrain(f))
    if f.finetune:
        out.append(_finetune(f))
    if f.tune:
        out.append(_tune(f))
    if f.transfer:
        out.append(_transfer(f))
    if f.distill:
        out.append(_distill(f))
    if f.export:
        out.append(_export(f))
    out.append(_lineage(f))
    return out
