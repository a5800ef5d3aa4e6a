"""Shared fixtures (a tiny prepared corpus, a tiny trained decoder); slow tests run only with LMFORGE_SLOW=1."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lmforge.cli import main
from lmforge.config.experiment import set_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LMFORGE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set LMFORGE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


WORDS = "the of and to in is that for it as with was on be by this are or from at which an have not".split() + \
        [f"w{i}" for i in range(150)]


def _corpus(path: Path, n=400, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(30, 90)))}) + "\n")


def make_config(root: Path, name: str, **over) -> Path:
    cfg = {"name": name, "run_dir": str(root / name), "seed": 11, "workers": 1,
           "data": {"sources": [{"path": str(root / "corpus.jsonl")}], "dedup": {"near": False},
                    "split": {"val": 0.1, "test": 0.05}, "pack": {"seq_len": 32}},
           "tokenizer": {"type": "bpe", "vocab_size": 300},
           "model": {"arch": "decoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 64},
           "pretrain": {"max_steps": 20, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2,
                        "eval_every": 10, "eval_batches": 2, "save_every": 10, "log_every": 1, "threads": 1}}
    for k, v in over.items():
        set_path(cfg, k.split("."), v)
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """(root, data config path): one corpus prepared once; tests point pretrain.data_dir at it."""
    root = tmp_path_factory.mktemp("train")
    _corpus(root / "corpus.jsonl")
    cfg = make_config(root, "data")
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    return root


@pytest.fixture
def cfg_for(prepared):
    """cfg_for(name, **overrides) → a config path training on the shared prepared corpus."""
    def make(name: str, **over) -> Path:
        over.setdefault("pretrain.data_dir", str(prepared / "data" / "data" / "tokens"))
        return make_config(prepared, name, **over)
    return make


@pytest.fixture(scope="session")
def tiny_decoder(prepared):
    """A pretrain folder: a 2-layer decoder trained 20 steps on the shared corpus."""
    cfg = make_config(prepared, "tiny_decoder", **{"pretrain.data_dir": str(prepared / "data" / "data" / "tokens")})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    return prepared / "tiny_decoder" / "pretrain"



FILLER = "the of and to in is that for it as with was on be by this are or from at".split()


def write_keyword_data(path: Path, n: int, seed: int, labels: list[str], keywords: int = 1,
                       max_words: int = 10) -> Path:
    """A learnable text-classification JSONL file: class c = ``keywords`` of its words
    w(10c)..w(10c+9) among filler words."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            c = rng.randrange(len(labels))
            words = [rng.choice(FILLER) for _ in range(rng.randrange(4, max_words))]
            for _ in range(keywords):
                words.insert(rng.randrange(len(words) + 1), f"w{10 * c + rng.randrange(10)}")
            f.write(json.dumps({"text": " ".join(words), "label": labels[c]}) + "\n")
    return Path(path)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A word-level tokenizer over the test vocabulary: one token per word keeps the tiny tasks
    learnable in a few hundred steps (a 300-entry BPE splits 'which' and 'w1' alike into 'w' ...)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>", "<cls>", "<sep>"]
    words = FILLER + ["which", "an", "not"] + [f"w{i}" for i in range(150)]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    from transformers import PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("wordtok")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>", mask_token="<mask>", cls_token="<cls>",
                            sep_token="<sep>").save_pretrained(str(d))  # as lmforge's tokenizer training saves
    return d


ENCODER = dict(arch="encoder", n_layer=2, n_head=2, d_model=32, max_seq_len=48, mlp="gelu", norm_position="post",
               type_vocab_size=2, embedding_norm=True, final_norm=False)
DECODER = dict(arch="decoder", n_layer=2, n_head=2, d_model=32, max_seq_len=48)


@pytest.fixture(scope="session")
def make_task_model(tokenizer_dir):
    """make_task_model(folder, body, task, labels) → a random tiny classifier saved as our
    fine-tuned HF folder (``best/`` layout, checksums included)."""
    def make(folder, body: dict, task: str, labels: list[str]):
        import torch

        from lmforge.export.hf import export_task_model
        from lmforge.models.config import ModelConfig
        from lmforge.models.heads import build_classifier
        from lmforge.models.layers import init_weights
        from lmforge.models.transformer import TransformerBody
        from lmforge.tokenizer.io import load_for_model

        torch.manual_seed(0)
        tok, specials = load_for_model(tokenizer_dir)
        cfg = ModelConfig(vocab_size=tok.get_vocab_size(), **body)
        b = TransformerBody(cfg, causal=cfg.arch == "decoder")
        init_weights(b)
        model = build_classifier(cfg, b, task, len(labels), 0.0).eval()
        export_task_model(model, folder, labels, specials, tokenizer_dir, {"max_length": 32})
        return folder
    return make


def interrupt_after(args: list[str], metrics: Path, records: int) -> tuple[int, str, int]:
    """Run ``lmforge ARGS`` in a subprocess, send SIGINT (Ctrl-C) once ``metrics`` holds ``records``
    lines, and return (exit code, stderr, the step the run reported stopping at)."""
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < records):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    step = int(err.split("interrupted at step ")[1].split(";")[0]) if "interrupted at step " in err else -1
    return proc.returncode, err, step


@pytest.fixture(scope="session")
def make_hf_lm(tokenizer_dir):
    """make_hf_lm(folder, kind) → a random tiny HF model folder with the word-level tokenizer:
    ``llama`` (a RoPE/RMSNorm/SwiGLU decoder) or ``bert`` (a bare encoder, like sentence encoders)."""
    def make(folder, kind: str):
        import shutil

        import torch
        from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

        from lmforge.tokenizer.io import load_for_model

        torch.manual_seed(0)
        vocab = load_for_model(tokenizer_dir)[0].get_vocab_size()
        if kind == "llama":
            model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                                 max_position_embeddings=48, tie_word_embeddings=False))
        else:
            model = BertModel(BertConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, max_position_embeddings=48), add_pooling_layer=False)
        model.eval().save_pretrained(str(folder))
        for f in Path(tokenizer_dir).iterdir():
            shutil.copy2(f, Path(folder) / f.name)
        return Path(folder)
    return make


NO_REPEAT_FILTERS = {"max_dup_line_frac": None, "max_top_ngram_frac": None, "max_dup_ngram_frac": None}


def pipeline_config(root: Path, name: str = "pipe", **pipeline) -> Path:
    """A one-config pipeline (corpus + labeled set → pretrain → finetune → ONNX export → serve) on tiny data."""
    if not (root / "corpus.jsonl").exists():
        _corpus(root / "corpus.jsonl", n=300, seed=5)
        write_keyword_data(root / "labeled.jsonl", 240, 7, ["a", "b", "c"])
    run = root / name
    cfg = {"name": name, "run_dir": str(run), "seed": 3, "workers": 1,
           "data": {"sources": [{"path": str(root / "corpus.jsonl")}], "dedup": {"near": False},
                    "split": {"val": 0.1, "test": 0.05}, "pack": {"seq_len": 32}},
           "tokenizer": {"type": "bpe", "vocab_size": 300},
           "labeled_data": {"sources": [{"path": str(root / "labeled.jsonl"), "label_field": "label"}],
                            "labels": ["a", "b", "c"], "filter": NO_REPEAT_FILTERS,
                            "dedup": {"exact": False, "near": False}, "split": {"val": 0.15, "test": 0.15}},
           "model": {"arch": "decoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 64},
           "pretrain": {"max_steps": 20, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2,
                        "eval_every": 10, "eval_batches": 2, "save_every": 5, "log_every": 5, "threads": 1},
           "finetune": {"task": "sequence", "init": str(run / "pretrain"), "data": {"max_length": 32},
                        "optim": {"lr": 3e-3}, "loop": {"epochs": 12, "batch_size": 16, "threads": 1},
                        "classifier_dropout": 0.0},
           "pipeline": {"export": "onnx", **pipeline}}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path




def kill9_after_checkpoint(args: list[str], checkpoints: Path, step: int, timeout: float = 120) -> None:
    """Run ``python -m lmforge *args`` and SIGKILL it as soon as a checkpoint at ``step`` or later exists."""
    from lmforge.layout import list_checkpoints

    proc = subprocess.Popen([sys.executable, "-m", "lmforge", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not any(int(p.name[5:]) >= step for p in list_checkpoints(checkpoints)):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _array_run(root: Path, name: str, cfg: dict) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "run_dir": str(root / name), "seed": 5, **cfg}))
    assert main(["data", "prepare", str(path), "--no-progress"]) == 0
    assert main(["finetune", str(path), "--no-progress"]) == 0
    return root / name


@pytest.fixture(scope="session")
def image_model(tmp_path_factory) -> Path:
    """A run folder with a small CNN fine-tuned on 300 of scikit-learn's 8x8 digits (run/finetune, run/data)."""
    return _array_run(tmp_path_factory.mktemp("imgmodel"), "digits", {
        "data": {"kind": "image", "image": {"sources": [{"builtin": "digits"}], "max_images": 300},
                 "split": {"val": 0.15, "test": 0.2}},
        "model": {"arch": "cnn", "conv_channels": [8], "hidden": [16]},
        "finetune": {"optim": {"lr": 3e-3}, "loop": {"max_steps": 40, "batch_size": 32, "threads": 1}}})


@pytest.fixture(scope="session")
def table_model(tmp_path_factory) -> Path:
    """A run folder with a tab_transformer fine-tuned on palmerpenguins (numeric and categorical columns)."""
    return _array_run(tmp_path_factory.mktemp("tabmodel"), "penguins", {
        "data": {"kind": "tabular", "tabular": {"sources": [{"builtin": "penguins"}],
                                                "columns": {"target": "species",
                                                            "numeric": ["bill_length_mm", "bill_depth_mm",
                                                                        "flipper_length_mm", "body_mass_g"],
                                                            "categorical": ["island", "sex"]},
                                                "missing": {"strategy": "median"}},
                 "split": {"val": 0.15, "test": 0.2}},
        "model": {"arch": "tab_transformer", "n_layer": 1, "n_head": 2, "d_model": 16, "d_ff": 32},
        "finetune": {"optim": {"lr": 3e-3}, "loop": {"max_steps": 60, "batch_size": 32, "threads": 1}}})


@pytest.fixture
def small_disk(tmp_path):
    """A real, tiny file system (tmpfs, 64 kB; grow or shrink it with :func:`resize`) for disk-full
    tests; skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def resize(mnt, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


def tree_bytes(root: Path) -> int:
    """Bytes of every file under ``root``."""
    return sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
