"""The ``lmforge`` command line: ``lmforge <stage> <action> CONFIG [--set key.path=value ...]``."""

from __future__ import annotations

import argparse
import os
import sys

from lmforge.config import ConfigError, load_config
from lmforge.errors import LmforgeError, storage_error


def _data_prepare(args: argparse.Namespace) -> int:
    from lmforge import api

    cfg = load_config(args.config, args.set)
    if not 0 <= args.rank < args.world_size:
        raise ConfigError([("--rank", f"must be in [0, --world-size={args.world_size}); got {args.rank}")])
    api.prepare(cfg, progress=not args.no_progress, rank=args.rank, world_size=args.world_size,
                executor=args.executor, address=args.address)
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from lmforge import api

    cfg = load_config(args.config, args.set)
    from lmforge.training.trial import trial_hook

    api.pretrain(cfg, resume=args.resume, overwrite=args.overwrite, resume_changed=args.resume_changed,
                 progress=not args.no_progress, on_eval=trial_hook())
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from lmforge import api

    cfg = load_config(args.config, args.set)
    from lmforge.training.trial import trial_hook

    api.finetune(cfg, resume=args.resume, overwrite=args.overwrite, resume_changed=args.resume_changed,
                 progress=not args.no_progress, on_eval=trial_hook())
    return 0


def _distill(args: argparse.Namespace) -> int:
    from lmforge.recipes.distill import distill

    cfg = load_config(args.config, args.set)
    distill(cfg.distill, cfg.finetune, cfg.pretrain, cfg.model, cfg.paths, cfg.seed, name=cfg.name,
            resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def _run(args: argparse.Namespace) -> int:
    from lmforge.config.experiment import load_raw
    from lmforge.recipes.run import run

    raw, _ = load_raw(args.config, args.set)
    cfg = load_config(args.config, args.set)
    import shlex

    run(cfg, raw, from_stage=args.from_stage, only=args.only, force=args.force, progress=not args.no_progress,
        command="lmforge " + shlex.join(args.argv))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmforge.errors import UsageError
    from lmforge.reporting.render import write_report

    if not Path(args.run_dir).is_dir():
        raise UsageError(f"{args.run_dir}: no such run folder (give runs/<name>)")
    page = write_report(args.run_dir, args.out)
    print(f"report: {page} (and {page.with_suffix('.md')})")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from lmforge.config.experiment import load_raw
    from lmforge.recipes.tune import tune

    from lmforge.recipes.tune import unknown_keys

    raw, source = load_raw(args.config, args.set)
    space = (raw.get("tune") or {}).get("space") or {}
    try:  # the schema's problems and unknown searched keys, all at once
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        raise ConfigError(exc.problems + unknown_keys(space if isinstance(space, dict) else {}), source) from None
    tune(cfg.tune, cfg.finetune, raw, name=cfg.name, seed=cfg.seed, run_dir=cfg.run_path, resume=args.resume,
         overwrite=args.overwrite, data_dir=cfg.paths.finetune_data)
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from lmforge.recipes.transfer import transfer

    cfg = load_config(args.config, args.set)
    transfer(cfg.transfer, cfg.finetune, cfg.model, cfg.paths, cfg.seed)
    return 0


def command_config(cls, args: argparse.Namespace):
    """A command's typed config from its flags (only those given; the dataclass holds the defaults),
    validated by the config schema: every problem at once, named by its flag."""
    from dataclasses import fields

    from lmforge.config.schema import build

    given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    try:
        return build(cls, given)
    except ConfigError as exc:
        raise ConfigError([(f"--{k.replace('_', '-')}" if k else k, m) for k, m in exc.problems],
                          "the command line") from None


def _evaluate(args: argparse.Namespace) -> int:
    import math

    from dataclasses import asdict

    from lmforge import api
    from lmforge.evaluation.config import EvaluateConfig
    from lmforge.evaluation.report import summary_table

    m = api.evaluate(progress=not args.no_progress, **asdict(command_config(EvaluateConfig, args)))
    report = m.pop("report")
    print(summary_table(m), end="")
    print(f"report: {report}")
    return 0 if math.isfinite(m.get("loss", 0.0)) else 1


def _predict(args: argparse.Namespace) -> int:
    from lmforge.inference.config import PredictConfig
    from lmforge.inference.predict import predict

    predict(command_config(PredictConfig, args), progress=not args.no_progress)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from lmforge.inference.config import GenerateConfig
    from lmforge.inference.generate import generate_stream

    for piece in generate_stream(command_config(GenerateConfig, args)):  # text appears as it is sampled
        print(piece, end="", flush=True)
    print()
    return 0


def _export(args: argparse.Namespace) -> int:
    from lmforge.export.config import ExportConfig

    cfg = command_config(ExportConfig, args)
    from lmforge.export.onnx_arrays import array_model_folder

    if array_model_folder(cfg.model) is not None:  # an image or table model
        return _export_arrays(cfg)
    if cfg.format == "hf":
        from lmforge.export.hf import export_hf

        print(f"HF folder → {export_hf(cfg.model, cfg.out)}")
        return 0
    from lmforge.export.onnx import export_onnx
    from lmforge.export.onnx_lm import export_lm_onnx, is_lm_source

    if is_lm_source(cfg.model):
        rec = export_lm_onnx(cfg)
        v = rec["verification"]
        print(f"ONNX ({rec['kind']}) → {rec['out']}: verified on {len(v['checks'])} checks, max |Δ| {v['max_abs_diff']:.2e}")
        if "int8" in rec:
            q = rec["int8"]
            agree = (f"top-1 agreement ≥ {q['min_top1_agreement']:.1%}" if "min_top1_agreement" in q
                     else f"embedding cosine ≥ {q['min_embedding_cosine']:.4f}")
            print(f"  int8: max |Δ| {q['max_abs_diff']:.3g}, {agree}, {q['bytes'] / 1e6:.1f} MB")
        return 0
    rec = export_onnx(cfg)
    v = rec["verification"]
    print(f"ONNX → {rec['out']}: verified on {len(v['checks'])} batches, max |Δ logit| {v['max_abs_logit_diff']:.2e}")
    if "quality" in rec:
        q = rec["quality"]
        for side in ("torch_fp32", "onnx_fp32", "onnx_int8"):
            if side in q:
                extra = (f", {q[side]['delta_points']:+.2f} pt, {q[side]['speedup_vs_torch']:.2f}x vs torch"
                         if side != "torch_fp32" else "")
                print(f"  {side:10s} {q['metric']} {q[side][q['metric']]:.4f}, batch-1 {q[side]['latency_ms_batch1']:.2f} ms{extra}")
    return 0


def _export_arrays(cfg) -> int:
    from lmforge.errors import UsageError
    from lmforge.export.onnx_arrays import export_array_onnx

    if cfg.format != "onnx":
        raise UsageError(f"--format {cfg.format}: image and table models export to onnx (a Hugging Face folder is "
                         "for Transformer text models)")
    rec = export_array_onnx(cfg)
    v = rec["verification"]
    print(f"ONNX ({rec['kind']}) → {rec['out']}: verified on {len(v['checks'])} batches, max |Δ| {v['max_abs_diff']:.2e}")
    if "int8" in rec:
        print(f"  int8: max |Δ| {rec['int8']['max_abs_diff']:.3g}, {rec['int8']['bytes'] / 1e6:.2f} MB")
    q = rec.get("quality")
    for side in ("torch_fp32", "onnx_fp32", "onnx_int8") if q else ():
        if side in q:
            print(f"  {side:10s} {q['metric']} {q[side][q['metric']]:.4f}, batch-1 {q[side]['latency_ms_batch1']:.3f} ms")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from lmforge.serving.config import ServeConfig
    from lmforge.serving.server import serve, smoke

    cfg = command_config(ServeConfig, args)
    if args.smoke is not None:
        smoke(cfg, args.smoke)
    else:
        serve(cfg)
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    cfg = load_config(args.config, args.set)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return 0


def _config_diff(args: argparse.Namespace) -> int:
    """Keys whose resolved values differ between two configs (defaults filled in on both sides)."""
    import json

    from lmforge.config.schema import to_dict

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else k
            out.update(flat(v, key) if isinstance(v, dict) and v else {key: v})
        return out

    a = flat(to_dict(load_config(args.a, args.set)))
    b = flat(to_dict(load_config(args.b, args.set)))
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    for k in changed:
        print(f"{k}: {json.dumps(a.get(k))} → {json.dumps(b.get(k))}")
    print(f"{len(changed)} key(s) differ" if changed else "no difference")
    return 0


def _configs(args: argparse.Namespace) -> int:
    """The presets under configs/, each with the first line of its header comment."""
    from lmforge.config.experiment import PRESET_DIR

    for path in sorted(PRESET_DIR.glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text(encoding="utf-8").splitlines()
                      if ln.startswith("#") and ln.lstrip("# ").strip()), "")
        print(f"{path.stem:22s} {first}")
    return 0


EXAMPLES = """examples:
  lmforge run quickstart                         the whole path on built-in data (data → pretrain → finetune → export → serve)
  lmforge run my.yaml --set finetune.optim.lr=1e-4   change a key: only what depends on it reruns
  lmforge data prepare my.yaml --set data.sources[0].path=corpus.jsonl
  lmforge finetune my.yaml --resume              continue from the last checkpoint
  lmforge report runs/my                         the run's HTML report
  lmforge configs                                the presets, one line each

exit codes: 0 done, 1 failure (data, files, training), 2 bad config or usage, 130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("lmforge")
    except PackageNotFoundError:
        ver = "unknown"
    p = argparse.ArgumentParser(prog="lmforge", description="From raw text to trained Transformers.", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"lmforge {ver}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("configs", help="list the preset configs (configs/*.yaml) with a line each").set_defaults(
        func=_configs)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("config", help="YAML file or preset name under configs/ (e.g. quickstart)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.split.val=0.05 (repeatable)")

    def train_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        sp.add_argument("--overwrite", action="store_true",
                        help="start over even though the output folder holds checkpoints (deletes them)")
        sp.add_argument("--resume-changed", action="store_true",
                        help="with --resume: accept config changes that break an exact continuation")
        sp.add_argument("--no-progress", action="store_true")

    data = sub.add_parser("data", help="data preparation").add_subparsers(dest="action", required=True)
    prep = data.add_parser("prepare", help="read, clean, filter, dedup, split, tokenize and pack a corpus")
    with_config(prep)
    prep.add_argument("--no-progress", action="store_true", help="no progress bars")
    prep.add_argument("--rank", type=int, default=0, help="with --world-size: ingest only this rank's units")
    prep.add_argument("--world-size", type=int, default=1,
                      help="split the ingest stage across N processes/machines sharing run_dir; then run once without it")
    prep.add_argument("--executor", choices=["local", "ray"], default="local",
                      help="run the per-unit stages on a local process pool (default) or as Ray tasks (text data only)")
    prep.add_argument("--address", metavar="auto|ray://HOST:PORT",
                      help="with --executor ray: the running cluster to use: auto (the cluster of this node, started "
                           "with `ray start`), HOST:PORT (its head's GCS address) or ray://HOST:PORT (Ray Client); "
                           "default: start a local Ray instance with `workers` CPUs. run_dir must be on a file system "
                           "every node sees")
    prep.set_defaults(func=_data_prepare)
    prep.epilog = ("examples:\n  lmforge data prepare quickstart\n"
                   "  lmforge data prepare my.yaml --set data.sources[0].path=corpus.jsonl --set data.split.val=0.05\n"
                   "  lmforge data prepare my.yaml --executor ray --address auto\n\n"
                   "exit codes: 0 done, 1 failure, 2 bad config or usage, 130 interrupted")
    prep.formatter_class = argparse.RawDescriptionHelpFormatter

    pre = sub.add_parser("pretrain", help="pretrain from scratch: a decoder (clm) or encoder (mlm, rtd) on text, a ViT (mae) on images")
    with_config(pre)
    train_flags(pre)
    pre.set_defaults(func=_pretrain)

    ft = sub.add_parser("finetune", help="fine-tune a classifier (sequence) or tagger (token) from random, "
                                         "our checkpoint, or a Hugging Face model")
    with_config(ft)
    train_flags(ft)
    ft.set_defaults(func=_finetune)

    di = sub.add_parser("distill", help="knowledge distillation: a smaller student (fewer layers of the teacher, "
                                        "or random) trained on the teacher's soft labels and the data's labels "
                                        "(classifier/tagger teacher: fine-tuning; causal-LM teacher: CLM pretraining)")
    with_config(di)
    train_flags(di)
    di.set_defaults(func=_distill)

    from lmforge.pipeline.config import STAGES

    rn = sub.add_parser("run", help="every stage the config declares, in order (data → labeled_data → pretrain → "
                                    "finetune → tune → distill → export → serve smoke); finished stages are "
                                    "skipped, an interrupted one resumes")
    with_config(rn)
    rn.add_argument("--from", dest="from_stage", choices=STAGES, help="rerun this stage and the ones after it")
    rn.add_argument("--only", choices=STAGES, help="(re)run this stage alone")
    rn.add_argument("--force", action="store_true", help="rerun every stage, ignoring what is done (earlier outputs are kept under <run>/previous/)")
    rn.add_argument("--no-progress", action="store_true", default=False)
    rn.set_defaults(func=_run)

    rp = sub.add_parser("report", help="one HTML page (figures embedded, opens offline) and the same as Markdown "
                                       "about a run folder: data, tokenizer, training curves, metrics, ROC/PR, "
                                       "calibration, mistakes, export, lineage")
    rp.add_argument("run_dir", help="a run folder, e.g. runs/quickstart")
    rp.add_argument("--out", help="output folder (default <run>/report)")
    rp.set_defaults(func=_report)

    tu = sub.add_parser("tune", help="hyperparameter search (Optuna: grid, random, TPE; median/Hyperband pruning) "
                                     "over any config key; each trial a fresh finetune/pretrain run")
    with_config(tu)
    tu.add_argument("--resume", action="store_true", help="continue the study (finished trials are kept)")
    tu.add_argument("--overwrite", action="store_true", help="delete the study and its trials, start over")
    tu.set_defaults(func=_tune)

    tr = sub.add_parser("transfer", help="transfer-benefit study: metric vs number of labels for several starting points")
    with_config(tr)
    tr.set_defaults(func=_transfer)

    S = argparse.SUPPRESS  # command flags left out take the typed config's default (see --help of each)
    ev = sub.add_parser("evaluate", help="metrics + report for a fine-tuned model (or perplexity for a pretrained LM)",
                        argument_default=S)
    ev.add_argument("model", help="finetune output folder, HF classification folder, or pretrain folder/checkpoint")
    ev.add_argument("--file", help="labeled file (.jsonl/.csv/.tsv; CoNLL for taggers)")
    ev.add_argument("--data-dir", help="prepared data folder (with --split)")
    ev.add_argument("--split", help="split of --data-dir (default test)")
    ev.add_argument("--text-field", help="default text")
    ev.add_argument("--label-field", help="default label")
    ev.add_argument("--max-length", type=int, help="default: the model's fine-tuning max_length")
    ev.add_argument("--batch-size", type=int, help="default 128")
    ev.add_argument("--out", help="report folder (default <model>/eval/<name>)")
    ev.add_argument("--no-progress", action="store_true", default=False)
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="labels + probabilities (or entities) for a file, as JSONL", argument_default=S)
    pr.add_argument("model", help="finetune output folder or HF classification folder")
    pr.add_argument("--file", required=True, help="input: .jsonl/.csv/.tsv (text field) or .txt (one text per line)")
    pr.add_argument("--text-field", help="default text")
    pr.add_argument("--id-field", help="copy this field/column of each record into its prediction as id")
    pr.add_argument("--with-text", action="store_true", default=S, help="copy each input text into its prediction")
    pr.add_argument("--out", help="output JSONL (default: stdout)")
    pr.add_argument("--max-length", type=int)
    pr.add_argument("--batch-size", type=int, help="default 128")
    pr.add_argument("--strict", action="store_true", default=S,
                    help="table models: refuse cells that do not parse, unseen categories and missing cells "
                         "(default: warn per column, impute)")
    pr.add_argument("--no-progress", action="store_true", default=False)
    pr.set_defaults(func=_predict)

    gen = sub.add_parser("generate", help="sample text from a decoder checkpoint", argument_default=S)
    gen.add_argument("checkpoint", help="checkpoint folder (step_NNNNNNN) or a pretrain output folder (latest)")
    gen.add_argument("--prompt")
    gen.add_argument("--max-new-tokens", type=int, help="default 100")
    gen.add_argument("--temperature", type=float, help="default 0.8 (0 = greedy)")
    gen.add_argument("--top-k", type=int, help="default 50")
    gen.add_argument("--top-p", type=float, help="default 0.95")
    gen.add_argument("--seed", type=int, help="default 0")
    gen.add_argument("--tokenizer", help="tokenizer folder/file (default: the one recorded in the checkpoint)")
    gen.set_defaults(func=_generate)

    ex = sub.add_parser("export", help="a model as a verified ONNX folder (optionally int8), or an HF folder",
                        argument_default=S)
    ex.add_argument("model", help="finetune folder or its best/ (onnx, hf); pretrain folder or checkpoint (onnx with "
                                  "past keys/values for decoders, hf); an HF model folder or `minilm` (onnx)")
    ex.add_argument("--format", choices=["onnx", "hf"], help="default onnx")
    ex.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx")
    ex.add_argument("--out", help="output folder (default <finetune>/export/<format>)")
    ex.add_argument("--file", help="labeled file: verify on it and report quality, size and latency per variant")
    ex.add_argument("--text-field")
    ex.add_argument("--label-field")
    ex.add_argument("--max-examples", type=int, help="examples of --file used (default 512)")
    ex.add_argument("--threads", type=int, help="threads for the latency measurement (default 2)")
    ex.set_defaults(func=_export)

    sv = sub.add_parser("serve", help="an HTTP server (FastAPI): classify / ner / embed with dynamic batching, "
                                      "generate with streaming", argument_default=S)
    sv.add_argument("model", help="finetune folder or its best/, pretrain folder or checkpoint, HF model folder or "
                                  "minilm (torch); an export folder (onnx)")
    sv.add_argument("--backend", choices=["torch", "onnx"], help="default torch")
    sv.add_argument("--onnx-file", help="graph in the export folder (default model.onnx; e.g. model.int8.onnx)")
    sv.add_argument("--host", help="default 127.0.0.1")
    sv.add_argument("--port", type=int, help="default 8000")
    sv.add_argument("--max-batch-size", type=int, help="texts per forward pass (default 32)")
    sv.add_argument("--generation-batch", type=int, help="torch decoders: concurrent generations sharing each forward "
                                                          "pass (default 8; 1 = one at a time)")
    sv.add_argument("--max-wait-ms", type=float, help="batching window after the queued texts are taken (default 0)")
    sv.add_argument("--max-texts", type=int, help="texts per request (default 64)")
    sv.add_argument("--max-chars", type=int, help="characters per text (default 20000)")
    sv.add_argument("--max-queue", type=int, help="queued texts before 429 (default 1024)")
    sv.add_argument("--timeout-s", type=float, help="per-request timeout (default 30)")
    sv.add_argument("--max-new-tokens", type=int, help="new tokens per generation request (default 512)")
    sv.add_argument("--no-kv-cache", dest="kv_cache", action="store_false",
                    help="torch decoders: re-run the whole sequence per token (to measure the cache)")
    sv.add_argument("--api-key", help="require Authorization: Bearer KEY (or set LMFORGE_API_KEY)")
    sv.add_argument("--rate-limit", type=float, help="requests per second per client on /v1/ (429 + Retry-After over it)")
    sv.add_argument("--threads", type=int, help="model threads per worker (default: cores / workers)")
    sv.add_argument("--workers", type=int, help="server processes, each with its own model (default 1)")
    sv.add_argument("--smoke", default=None, metavar="TEXT",
                    help="start on a free port, send TEXT once, print the answer, stop")
    sv.set_defaults(func=_serve)

    examples = {
        "run": ["lmforge run quickstart", "lmforge run my.yaml --set finetune.optim.lr=1e-4   # reruns finetune onward",
                "lmforge run my.yaml --only export", "lmforge run my.yaml --from pretrain"],
        "pretrain": ["lmforge pretrain quickstart --overwrite", "lmforge pretrain my.yaml --resume",
                     "torchrun --nproc_per_node 2 -m lmforge pretrain my.yaml"],
        "finetune": ["lmforge finetune my.yaml --set finetune.init=minilm", "lmforge finetune my.yaml --resume"],
        "distill": ["lmforge distill my.yaml   # distill.teacher: runs/big/finetune, finetune.keep_layers: [0, 2, 4]"],
        "tune": ["lmforge tune my.yaml   # tune.space: {finetune.optim.lr: {type: float, low: 1e-5, high: 3e-4, log: true}}",
                 "lmforge tune my.yaml --resume"],
        "report": ["lmforge report runs/quickstart   # → runs/quickstart/report/report.html"],
        "evaluate": ["lmforge evaluate runs/my/finetune --file test.jsonl",
                     "lmforge evaluate runs/my/pretrain --data-dir runs/my/data --split test   # perplexity"],
        "predict": ["lmforge predict runs/my/finetune --file new.jsonl --id-field id --out preds.jsonl"],
        "generate": ["lmforge generate runs/quickstart/pretrain --prompt 'Return the' --temperature 0"],
        "export": ["lmforge export runs/my/finetune --quantize int8 --file test.jsonl",
                   "lmforge export runs/my/pretrain   # a decoder with past keys/values"],
        "serve": ["lmforge serve runs/my/finetune --port 8000",
                  "lmforge serve runs/my/finetune/export/onnx --backend onnx --onnx-file model.int8.onnx"],
    }
    for name, lines in examples.items():
        sp = sub.choices[name]
        sp.epilog = "examples:\n" + "\n".join(f"  {x}" for x in lines) + \
            "\n\nexit codes: 0 done, 1 failure, 2 bad config or usage, 130 interrupted"
        sp.formatter_class = argparse.RawDescriptionHelpFormatter

    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print the validated config with all defaults")
    with_config(show)
    show.set_defaults(func=_config_show)
    diff = config.add_parser("diff", help="the keys whose values differ between two configs (defaults filled in)")
    diff.add_argument("a", help="YAML file or preset")
    diff.add_argument("b", help="YAML file or preset")
    diff.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="applied to both sides")
    diff.set_defaults(func=_config_diff)
    return p


TIMED = ("run", "data", "pretrain", "finetune", "distill", "tune", "transfer", "evaluate", "predict", "export")


def _check_model_paths(args: argparse.Namespace) -> None:
    """A model or checkpoint argument that names nothing on disk is said to be missing as such
    (not as a folder of the wrong kind). ``minilm`` is a name, not a path."""
    from pathlib import Path

    from lmforge.errors import ArtifactError

    for attr in ("checkpoint", "model"):
        value = getattr(args, attr, None)
        if isinstance(value, str) and value and value != "minilm" and not Path(value).exists():
            parent = Path(value).parent
            near = sorted(p.name for p in parent.iterdir())[:8] if parent.is_dir() else []
            raise ArtifactError(f"{value}: does not exist" + (f" (in {parent}: {', '.join(near)})" if near else ""))


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors a user can fix (:class:`LmforgeError`) print one ``lmforge:`` message
    and return their exit code (2 configuration/usage, 1 other, 130 interrupted); anything else is
    a bug and propagates with its traceback."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # named back in "rerun ... to resume" advice
    try:
        try:
            _check_model_paths(args)
            import time

            t0 = time.time()
            rc = args.func(args)
            if rc == 0 and args.command in TIMED and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 says it
                what = f"{args.command} {getattr(args, 'action', '')}".strip()
                print(f"lmforge {what}: done in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
            return rc
        except OSError as exc:  # disk full, read-only, permission denied: the user's to fix, not a bug
            err = storage_error(exc)
            if err is None:
                raise
            raise err from None
    except KeyboardInterrupt:  # Ctrl-C in a command without its own stop handling (data prepare, export, ...)
        rerun = " ".join(["lmforge", *args.argv])
        print(f"lmforge: interrupted (Ctrl-C). Finished steps and earlier outputs are kept; run the same command "
              f"again to go on: {rerun}", file=sys.stderr)
        return 130
    except LmforgeError as exc:
        from lmforge.data.document import RecordError

        prefix = "strict mode: " if isinstance(exc, RecordError) else ("" if exc.exit_code == 2 else "error: ")
        print(f"lmforge: {prefix}{exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
