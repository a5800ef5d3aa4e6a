"""``lmforge export`` of language models and encoders: decoder graphs with past keys/values
that generate in onnxruntime exactly as PyTorch does, encoder graphs whose embeddings match
Hugging Face's model, and the verification that refuses a graph that does not match."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from lmforge.cli import main  # noqa: E402
from lmforge.export.config import ExportConfig  # noqa: E402
from lmforge.export.onnx import ExportError  # noqa: E402
from lmforge.export.onnx_lm import export_lm_onnx  # noqa: E402
from lmforge.inference.ort import session  # noqa: E402
from lmforge.inference.decoders import OnnxDecoder, TorchDecoder  # noqa: E402
from lmforge.inference.generate import stream  # noqa: E402
from lmforge.models.load import load_language_model  # noqa: E402


def _generate(decoder, ids, n, **kw):
    return torch.stack(list(stream(decoder, ids, n, **kw)), dim=1)


@pytest.mark.parametrize("source", ["own", "llama"])
def test_decoder_export_generates_like_pytorch(tmp_path, tiny_decoder, make_hf_lm, source, capsys):
    src = tiny_decoder if source == "own" else make_hf_lm(tmp_path / "llama", "llama")  # learned positions / RoPE
    out = tmp_path / "onnx"
    assert main(["export", str(src), "--out", str(out), "--quantize", "int8"]) == 0
    assert "ONNX (causal_lm)" in capsys.readouterr().out
    rec = json.loads((out / "export.json").read_text())
    checks = rec["verification"]["checks"]
    assert rec["kind"] == "causal_lm" and rec["verification"]["max_abs_diff"] <= 1e-4
    assert len({tuple(c["shape"]) for c in checks if c["inputs"].startswith("synthetic")}) >= 3
    assert sum(c["inputs"].startswith("incremental") for c in checks) == 7  # prompt, 5 single steps, a chunk
    assert 0.0 <= rec["int8"]["min_top1_agreement"] <= 1.0 and rec["int8"]["bytes"] < rec["files"]["model.onnx"]
    meta = json.loads((out / "lmforge_lm.json").read_text())
    assert meta["kind"] == "causal_lm" and (out / "tokenizer.json").is_file() and "text-generation" in (out / "README.md").read_text()
    lm = load_language_model(src)
    c = lm.cfg
    ids = torch.randint(0, c.vocab_size, (2, 7), generator=torch.Generator().manual_seed(4))
    ort_dec = OnnxDecoder(session(out / "model.onnx"), c.n_layer, c.n_head, c.head_dim)
    for kw in ({"temperature": 0.0}, {"temperature": 0.9, "top_k": 20, "seed": 3}):
        want = _generate(TorchDecoder(lm.model), ids, 12, **kw)
        assert torch.equal(_generate(ort_dec, ids, 12, **kw), want), kw
        assert torch.equal(_generate(TorchDecoder(lm.model, use_cache=False), ids, 12, **kw), want), kw


def test_encoder_export_matches_hugging_face(tmp_path, make_hf_lm):
    from transformers import BertModel

    src = make_hf_lm(tmp_path / "bert", "bert")
    rec = export_lm_onnx(ExportConfig(model=str(src), out=str(tmp_path / "onnx")))
    assert rec["kind"] == "encoder" and rec["verification"]["max_abs_diff"] <= 1e-4
    assert len({tuple(c["shape"]) for c in rec["verification"]["checks"]}) >= 3
    hf = BertModel.from_pretrained(str(src)).eval()
    ids = torch.randint(5, 100, (3, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    want = ((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()
    got = session(tmp_path / "onnx" / "model.onnx").run(["sentence_embedding"], {"input_ids": ids.numpy(),
                                                                                   "attention_mask": mask.numpy()})[0]
    assert np.abs(got - want).max() < 1e-4


def test_a_graph_that_does_not_match_writes_nothing(tmp_path, make_hf_lm):
    src = make_hf_lm(tmp_path / "bert", "bert")
    with pytest.raises(ExportError, match="nothing was written"):
        export_lm_onnx(ExportConfig(model=str(src), out=str(tmp_path / "onnx"), tolerance=0.0))
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "onnx.tmp").exists()


def test_not_a_language_model(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["export", str(tmp_path / "x")]) != 0
    assert "x" in capsys.readouterr().err


def test_a_decoder_shorter_than_the_checks_exports(tmp_path, tokenizer_dir):
    """max_seq_len 8: the shapes and the incremental plan fit the model (they assumed 14+)."""
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel

    from lmforge.tokenizer.io import load_for_model

    torch.manual_seed(0)
    vocab = load_for_model(tokenizer_dir)[0].get_vocab_size()
    GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=8, n_embd=32, n_layer=1, n_head=2)).eval() \
        .save_pretrained(str(tmp_path / "gpt2"))
    for f in tokenizer_dir.iterdir():
        shutil.copy2(f, tmp_path / "gpt2" / f.name)
    rec = export_lm_onnx(ExportConfig(model=str(tmp_path / "gpt2"), out=str(tmp_path / "onnx")))
    inc = [c for c in rec["verification"]["checks"] if c["inputs"].startswith("incremental")]
    assert rec["verification"]["max_abs_diff"] <= 1e-4 and sum(c["shape"][1] for c in inc) == 8
