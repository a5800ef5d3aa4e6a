"""The human report of a data-preparation run: ``report.md`` with PNG plots in ``plots/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _bin_labels(edges: list[int]) -> list[str]:
    def fmt(x: int) -> str:
        return "∞" if x >= 1 << 39 else (f"{x // 1024}k" if x >= 1024 else str(x))
    return [f"{fmt(a)}–{fmt(b)}" for a, b in zip(edges[:-1], edges[1:])]


def _plots(out: Path, m: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    pdir = out / "plots"
    pdir.mkdir(exist_ok=True)
    splits = list(m["splits"])

    for key, bins_key, title, fname in (("char_length_hist", "chars", "Document length (characters)", "length_chars.png"),
                                        ("token_length_hist", "tokens", "Document length (tokens)", "length_tokens.png")):
        labels = _bin_labels(m["histogram_bins"][bins_key])
        fig, ax = plt.subplots(figsize=(9, 4))
        x = np.arange(len(labels))
        w = 0.8 / len(splits)
        for i, s in enumerate(splits):
            counts = np.asarray(m["splits"][s][key], dtype=float)
            frac = counts / counts.sum() if counts.sum() else counts
            ax.bar(x + i * w, frac, w, label=f"{s} ({int(counts.sum())})")
        ax.set_xticks(x + w * (len(splits) - 1) / 2, labels, rotation=45, ha="right")
        ax.set_ylabel("fraction of documents")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(pdir / fname, dpi=90)
        plt.close(fig)
        plots.append((title, f"plots/{fname}"))

    reasons = [(f"{step}: {r}", n) for step, st in m["steps"].items() for r, n in st["dropped"].items() if n]
    if reasons:
        reasons.sort(key=lambda t: t[1])
        fig, ax = plt.subplots(figsize=(9, 0.4 * len(reasons) + 1.2))
        ax.barh([r for r, _ in reasons], [n for _, n in reasons], color="tab:red")
        ax.set_xscale("log")
        ax.set_xlabel("records dropped (log scale)")
        ax.set_title("Why records were dropped")
        for i, (_, n) in enumerate(reasons):
            ax.text(n, i, f" {n}", va="center")
        fig.tight_layout()
        fig.savefig(pdir / "drop_reasons.png", dpi=90)
        plt.close(fig)
        plots.append(("Drop reasons", "plots/drop_reasons.png"))

    label_names = sorted({lb for s in splits for lb in m["splits"][s]["labels"]})
    if label_names:
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(label_names) + 2), 4))
        x = np.arange(len(label_names))
        w = 0.8 / len(splits)
        for i, s in enumerate(splits):
            counts = np.array([m["splits"][s]["labels"].get(lb, 0) for lb in label_names], dtype=float)
            ax.bar(x + i * w, counts / max(counts.sum(), 1), w, label=s)
        ax.set_xticks(x + w * (len(splits) - 1) / 2, label_names, rotation=45, ha="right")
        ax.set_ylabel("fraction of split")
        ax.set_title("Label distribution per split")
        ax.legend()
        fig.tight_layout()
        fig.savefig(pdir / "labels.png", dpi=90)
        plt.close(fig)
        plots.append(("Label distribution", "plots/labels.png"))
    return plots


def write_report(out: Path, m: dict) -> Path:
    plots = _plots(out, m)
    L = [f"# Data report: {m['name']}", "",
         f"Config hash `{m['config_hash']}`, {m['units']} work unit(s), {m['timings_s']['total']} s, "
         f"peak RSS {m['peak_rss_mb']} MB (main) / {m['peak_rss_workers_mb']} MB (largest worker).", "",
         "## Inputs", "", "| input | bytes | sha256 |", "|---|---:|---|"]
    for i in m["inputs"]:
        L.append(f"| `{i['path']}` | {i.get('bytes', '?')} | `{(i.get('sha256') or '-')[:16]}` |")
    L += ["", "## What each step kept and dropped", "", "| step | read | kept | dropped (by reason) |", "|---|---:|---:|---|"]
    for name, st in m["steps"].items():
        dropped = ", ".join(f"{k}: {v}" for k, v in st["dropped"].items()) or "—"
        L.append(f"| {name} | {st['read']} | {st['kept']} | {dropped} |")
    extras = [(name, k, v) for name, st in m["steps"].items() for k, v in st["extra"].items()]
    if extras:
        L += ["", "Notes: " + "; ".join(f"{n}.{k} = {v}" for n, k, v in extras) + "."]
    lc = m.get("label_conflicts")
    if lc and lc["groups"]:
        L += ["", f"**Label conflicts:** {lc['groups']} text(s) appear with different labels ({lc['documents']} copies); "
              f"`dedup.label_conflicts: {lc['policy']}` dropped {lc['dropped']} of them (reason `label_conflict` "
              "under `rejected/`). Examples:", "", "| ids | labels |", "|---|---|"]
        L += [f"| {', '.join(e['ids'])} | {', '.join(e['labels'])} |" for e in lc["examples"]]
    elif lc is not None:
        L += ["", "Label conflicts: none (no text appears with two different labels)."]
    empty = m["steps"].get("read", {}).get("extra", {}).get("empty_files")
    if empty:
        L += ["", f"**Warning:** {empty} input file(s) were empty."]
    L += ["", "Every dropped record is listed, with its source file and line, under `rejected/`.", "",
          "## Splits", "", "| split | documents | characters | tokens | truncated |", "|---|---:|---:|---:|---:|"]
    for s, v in m["splits"].items():
        L.append(f"| {s} | {v['docs']} | {v['chars']} | {v['tokens']} | {v['truncated']} |")
    if m.get("leak_check"):
        lc = m["leak_check"]
        counts = {k: v for k, v in lc.items() if k.startswith(("exact_", "near_"))}
        idx = lc.get("index", {})
        L += ["", f"**Leak check** (exact copies, and near duplicates at true Jaccard ≥ {lc.get('threshold')} "
              f"found with a MinHash index of its own — {idx.get('bands')} bands × {idx.get('rows')} rows, "
              "independent of dedup's): left in the splits **" + str(lc["total"]) + "** (target 0) — "
              + ", ".join(f"{k} = {v}" for k, v in counts.items()) + "."]
        if lc.get("found"):
            L += [f"Found {lc['found']} before `split.on_leak: {lc.get('on_leak')}`; {lc.get('moved_docs', 0)} "
                  "document(s) moved into train with their duplicate clusters and groups.", "",
                  "| document | split | duplicates | in | kind | Jaccard |", "|---|---|---|---|---|---:|"]
            L += [f"| {r['id']} | {r['split']} | {r['duplicates']} | {r['in']} | {r['kind']} | {r['jaccard']} |"
                  for r in lc.get("pairs", [])[:20]]
    t = m["tokenizer"]
    L += ["", "## Tokenizer", "",
          f"{'Trained ' + t.get('type', '') if t.get('trained') else 'Loaded from ' + str(t.get('source'))}; "
          f"vocabulary {t['vocab_size']}; {t.get('chars_per_token_train')} characters per token on train; "
          f"special ids {t['special_ids']}."]
    if t.get("trained"):
        L.append(f"Trained on {t['train_docs']} documents / {t['train_chars']} characters of the train split.")
    sh = m["shards"]
    L += ["", "## Shards", "", f"`{sh['index']}`: kind {sh['kind']}, dtype {sh['dtype']}"
          + (f", seq_len {sh['seq_len']}" if sh["seq_len"] else "") + ".", ""]
    for s, v in sh["splits"].items():
        L.append(f"- {s}: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    if m.get("framing"):
        L += ["", f"Framing (`data.pack.framing: {m['framing']['kind']}`): {m['framing']['text']}."]
    L += ["", "## Plots", ""]
    for title, path in plots:
        L += [f"### {title}", "", f"![{title}]({path})", ""]
    L += ["## Timings (s)", "", ", ".join(f"{k} {v}" for k, v in m["timings_s"].items()), ""]
    path = out / "report.md"
    path.write_text("\n".join(L))
    return path
