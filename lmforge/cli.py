"""The ``lmforge`` command line: ``lmforge <stage> <action> CONFIG [--set key.path=value ...]``."""

from __future__ import annotations

import argparse
import sys

from lmforge.config import ConfigError, load_config
from lmforge.errors import LmforgeError


def _data_prepare(args: argparse.Namespace) -> int:
    from lmforge.data.prepare import prepare

    cfg = load_config(args.config, args.set)
    if not 0 <= args.rank < args.world_size:
        raise ConfigError([("--rank", f"must be in [0, --world-size={args.world_size}); got {args.rank}")])
    prepare(cfg, progress=not args.no_progress, rank=args.rank, world_size=args.world_size)
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from lmforge.training.pretrain import pretrain

    cfg = load_config(args.config, args.set)
    pretrain(cfg, resume=args.resume, progress=not args.no_progress)
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from lmforge.training.finetune import finetune

    cfg = load_config(args.config, args.set)
    finetune(cfg, resume=args.resume, progress=not args.no_progress)
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from lmforge.training.transfer import transfer

    transfer(load_config(args.config, args.set))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from lmforge.evaluation.evaluate import evaluate_cli

    return evaluate_cli(args)


def _predict(args: argparse.Namespace) -> int:
    from lmforge.evaluation.predict import predict_cli

    return predict_cli(args)


def _generate(args: argparse.Namespace) -> int:
    from lmforge.training.generate import generate_text

    print(generate_text(args.checkpoint, args.prompt, args.max_new_tokens, args.temperature, args.top_k,
                        args.top_p, args.seed, args.tokenizer))
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    cfg = load_config(args.config, args.set)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmforge", description="From raw text to trained Transformers.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("config", help="YAML file or preset name under configs/ (e.g. quickstart)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.split.val=0.05 (repeatable)")

    data = sub.add_parser("data", help="data preparation").add_subparsers(dest="action", required=True)
    prep = data.add_parser("prepare", help="read, clean, filter, dedup, split, tokenize and pack a corpus")
    with_config(prep)
    prep.add_argument("--no-progress", action="store_true", help="no progress bars")
    prep.add_argument("--rank", type=int, default=0, help="with --world-size: ingest only this rank's units")
    prep.add_argument("--world-size", type=int, default=1,
                      help="split the ingest stage across N processes/machines sharing run_dir; then run once without it")
    prep.set_defaults(func=_data_prepare)

    pre = sub.add_parser("pretrain", help="pretrain a decoder (clm) or encoder (mlm) from scratch")
    with_config(pre)
    pre.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(func=_pretrain)

    ft = sub.add_parser("finetune", help="fine-tune a classifier (sequence) or tagger (token) from random, "
                                         "our checkpoint, or a Hugging Face model")
    with_config(ft)
    ft.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    ft.add_argument("--no-progress", action="store_true")
    ft.set_defaults(func=_finetune)

    tr = sub.add_parser("transfer", help="transfer-benefit study: metric vs number of labels for several starting points")
    with_config(tr)
    tr.set_defaults(func=_transfer)

    ev = sub.add_parser("evaluate", help="metrics + report for a fine-tuned model (or perplexity for a pretrained LM)")
    ev.add_argument("model", help="finetune output folder, HF classification folder, or pretrain folder/checkpoint")
    ev.add_argument("--file", help="labeled file (.jsonl/.csv/.tsv; CoNLL for taggers)")
    ev.add_argument("--data-dir", help="prepared data folder (with --split)")
    ev.add_argument("--split", default="test", help="split of --data-dir (default test)")
    ev.add_argument("--text-field", default="text")
    ev.add_argument("--label-field", default="label")
    ev.add_argument("--max-length", type=int, default=None, help="default: the model's fine-tuning max_length")
    ev.add_argument("--batch-size", type=int, default=128)
    ev.add_argument("--out", help="report folder (default <model>/eval/<name>)")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="labels + probabilities (or entities) for a file, as JSONL")
    pr.add_argument("model", help="finetune output folder or HF classification folder")
    pr.add_argument("--file", required=True, help="input: .jsonl/.csv/.tsv (text field) or .txt (one text per line)")
    pr.add_argument("--text-field", default="text")
    pr.add_argument("--out", help="output JSONL (default: stdout)")
    pr.add_argument("--max-length", type=int, default=None)
    pr.add_argument("--batch-size", type=int, default=128)
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(func=_predict)

    gen = sub.add_parser("generate", help="sample text from a decoder checkpoint")
    gen.add_argument("checkpoint", help="checkpoint folder (step_NNNNNNN) or a pretrain output folder (latest)")
    gen.add_argument("--prompt", default="")
    gen.add_argument("--max-new-tokens", type=int, default=100)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-k", type=int, default=50)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--tokenizer", default=None, help="tokenizer folder/file (default: the one recorded in the checkpoint)")
    gen.set_defaults(func=_generate)

    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print the validated config with all defaults")
    with_config(show)
    show.set_defaults(func=_config_show)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors a user can fix (:class:`LmforgeError`) print one ``lmforge:`` message
    and return their exit code (2 configuration/usage, 1 other, 130 interrupted); anything else is
    a bug and propagates with its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LmforgeError as exc:
        from lmforge.data.document import RecordError

        prefix = "strict mode: " if isinstance(exc, RecordError) else ("" if exc.exit_code == 2 else "error: ")
        print(f"lmforge: {prefix}{exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
