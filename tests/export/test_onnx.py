"""``lmforge export``: ONNX graphs that match PyTorch for every task-model kind, int8 with its
measured quality change, the model card, HF export of a pretrained LM, and clear failures."""

import json
import random

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from conftest import DECODER, ENCODER  # noqa: E402
from lmforge.cli import main  # noqa: E402
from lmforge.export.config import ExportConfig  # noqa: E402
from lmforge.export.onnx import ExportError, export_onnx  # noqa: E402
from lmforge.models.load import load_task_model  # noqa: E402
from lmforge.tokenizer.io import load_for_model  # noqa: E402

def labeled_file(path, task: str, n=40):
    rng = random.Random(1)
    words = ["the", "of", "and", "which", "not", "w1", "w2", "w17", "w33"]
    if task == "sequence":
        path.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randrange(2, 30))),
                                            "label": rng.choice("ab")}) + "\n" for _ in range(n)))
    else:
        lines = []
        for _ in range(n):
            lines += [f"{rng.choice(words)} NN O {rng.choice(['O', 'B-PER', 'I-PER'])}" for _ in range(rng.randrange(2, 20))]
            lines.append("")
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("body,task", [(ENCODER, "sequence"), (DECODER, "sequence"), (ENCODER, "token"),
                                       (DECODER, "token")], ids=["encoder-seq", "decoder-seq", "encoder-tok", "decoder-tok"])
def test_onnx_matches_pytorch_and_int8_is_measured(tmp_path, make_task_model, body, task):
    labels = ["a", "b"] if task == "sequence" else ["O", "B-PER", "I-PER"]
    model = make_task_model(tmp_path / "best", body, task, labels)
    data = labeled_file(tmp_path / ("d.jsonl" if task == "sequence" else "d.conll"), task)
    rec = export_onnx(ExportConfig(model=str(model), quantize="int8", out=str(tmp_path / "onnx"), file=str(data),
                                   latency_examples=5, threads=1))
    v = rec["verification"]
    shapes = {tuple(c["shape"]) for c in v["checks"]}
    assert len(shapes) >= 3 and v["max_abs_logit_diff"] <= 1e-4  # synthetic 1x5, 3x17, 4x48 and the file's batches
    assert any(c["inputs"].startswith("synthetic 4x48") for c in v["checks"])
    q = rec["quality"]
    assert q["examples"] == 40 and {"torch_fp32", "onnx_fp32", "onnx_int8"} <= set(q)
    assert q["onnx_fp32"]["delta_points"] == 0.0  # fp32 graph: same predictions
    out = tmp_path / "onnx"
    for f in ("model.onnx", "model.int8.onnx", "tokenizer.json", "config.json", "lmforge_task.json", "export.json",
              "README.md", "lmforge_checksums.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "export.json").read_text())["verification"]["max_abs_logit_diff"] == v["max_abs_logit_diff"]
    assert "Verification" in (out / "README.md").read_text()
    # the folder is self-contained: onnxruntime + the tokenizer in it reproduce the PyTorch model
    import onnxruntime as ort

    tm = load_task_model(model)
    tok, specials = load_for_model(out)
    ids = specials.wrap(tok.encode("the w1 of w2", add_special_tokens=False).ids, tm.model.causal)[0]
    x = np.asarray([ids], dtype=np.int64)
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})[0]
    with torch.no_grad():
        want = tm.model(torch.from_numpy(x), torch.ones_like(torch.from_numpy(x)))[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_cli_export_and_failures(tmp_path, make_task_model, capsys):
    model = make_task_model(tmp_path / "ft" / "best", ENCODER, "sequence", ["a", "b"])
    assert main(["export", str(tmp_path / "ft")]) == 0  # default place: <finetune>/export/onnx
    assert "max |Δ logit|" in capsys.readouterr().out and (tmp_path / "ft" / "export" / "onnx" / "model.onnx").is_file()
    assert main(["export", str(tmp_path / "ft"), "--format", "hf", "--quantize", "int8"]) == 2
    assert "--quantize: int8 quantization is for --format onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 1
    assert "not a fine-tuned model folder" in capsys.readouterr().err
    with pytest.raises(ExportError, match="differs from the PyTorch model"):  # a gate that can fail
        export_onnx(ExportConfig(model=str(model), out=str(tmp_path / "strict"), tolerance=0.0))
    assert not (tmp_path / "strict").exists() and not (tmp_path / "strict.tmp").exists()


def test_hf_export_of_a_pretrained_decoder(tiny_decoder, tmp_path):
    from transformers import AutoModelForCausalLM

    assert main(["export", str(tiny_decoder), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert (tmp_path / "hf" / "tokenizer.json").is_file() and hf.config.n_layer == 2


def test_kill9_while_an_export_is_replaced_loses_nothing(tmp_path, make_task_model):
    """A re-export SIGKILLed between its two renames (fault point swap.between) leaves the previous
    export as onnx.old; the next export puts things right and writes the same verified model."""
    import hashlib
    import os
    import subprocess
    import sys

    make_task_model(tmp_path / "ft" / "best", ENCODER, "sequence", ["a", "b"])
    cmd = [sys.executable, "-m", "lmforge", "export", str(tmp_path / "ft")]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    out = tmp_path / "ft" / "export" / "onnx"
    first = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    p = subprocess.run(cmd, env={**os.environ, "LMFORGE_FAULT": "swap.between"}, capture_output=True, text=True)
    assert p.returncode == -9, p.stderr[-2000:]
    assert not out.exists() and (out.parent / "onnx.old" / "model.onnx").is_file()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert not (out.parent / "onnx.old").exists()
    assert hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest() == first
    assert json.loads((out / "export.json").read_text())["verification"]["max_abs_logit_diff"] < 1e-4
