"""A language model or encoder as a self-verified ONNX folder (decoders with past keys/values).

Sources: one of our checkpoints or pretrain folders, an HF model folder (GPT-2, Llama, BERT) or
``minilm``. Same exporter as the task models (``torch.onnx.export(dynamo=True)``), dynamic batch,
sequence and past axes.

* decoder → ``model.onnx``: inputs ``input_ids`` (int64 [batch, seq]), ``attention_mask`` (int64
  [batch, past + seq]), ``past_keys``/``past_values`` (float32 [layers, batch, heads, past, head
  size]; past may be 0 for the prompt); outputs ``logits`` [batch, seq, vocab] and
  ``present_keys``/``present_values`` (past + seq). Keys and values are stacked over layers so a
  runtime carries two arrays, not 2 × layers. Generation runs in onnxruntime alone
  (:class:`~lmforge.inference.decoders.OnnxDecoder`).
* encoder → ``model.onnx``: inputs ``input_ids``, ``attention_mask``; outputs
  ``last_hidden_state`` [batch, seq, d_model] and ``sentence_embedding`` [batch, d_model], the mean of the
  hidden states over real tokens (the sentence-transformers pooling of MiniLM).

Verification, at export time: full sequences with an empty past (three shapes, one with right
padding, one of the model's full length), then incremental decoding — a prompt, single-token
steps and a multi-token chunk fed through the returned past — each compared with PyTorch on the
whole sequence; with ``--file``, padded batches of its texts too. Max |Δ| over real positions must
be ≤ ``tol`` or nothing is written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lmforge.export.config import ExportConfig
from lmforge.export.onnx import ExportError, check_tolerance, publish, quantize_int8, quiet, staging
from lmforge.inference.ort import session
from lmforge.inference.embed import mean_pool, normalize
from lmforge.layout import LM_META_FILE, kind_of
from lmforge.models.layers import KVCache
from lmforge.models.load import LoadedLM, load_language_model
from lmforge.tokenizer.io import copy_files, load_for_model


def is_lm_source(path: str) -> bool:
    """Whether ``lmforge export`` should treat ``path`` as a language model / encoder."""
    return path == "minilm" or kind_of(path) in ("checkpoint", "pretrain", "hf_model")


class _DecoderStep(torch.nn.Module):
    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, past_keys, past_values):
        cache = KVCache.from_stacked(past_keys, past_values)
        logits = self.lm.head(self.lm.body(input_ids, attention_mask, cache=cache))
        keys, values = cache.stacked()
        return logits, keys, values


class _EncoderStates(torch.nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, input_ids, attention_mask):
        h = self.body(input_ids, attention_mask)
        return h, mean_pool(h, attention_mask)


def _shapes(max_len: int) -> list[tuple[int, int]]:
    return [(1, min(5, max_len)), (3, min(17, max_len)), (2, max_len)]


def _incremental_plan(total: int) -> list[int]:
    """Chunk sizes for the incremental check: a prompt, single-token steps, then one chunk of
    the rest (for the default 14 positions: 6, 1, 1, 1, 1, 1, 3), never an empty chunk."""
    prompt = max(1, min(6, total - 2))
    plan = [prompt] + [1] * min(5, total - prompt - 1)
    if total > sum(plan):
        plan.append(total - sum(plan))
    return plan


def _synthetic(lm: LoadedLM, pad: int, g: torch.Generator) -> list[dict]:
    batches = []
    for b, t in _shapes(lm.cfg.max_seq_len):
        ids = torch.randint(0, lm.cfg.vocab_size, (b, t), generator=g)
        mask = torch.ones_like(ids)
        if b > 1:
            mask[0, t // 2:] = 0
            ids[0, t // 2:] = pad
        batches.append({"ids": ids, "mask": mask, "source": f"synthetic {b}x{t}"})
    return batches


def _file_batches(lm: LoadedLM, cfg: ExportConfig, tok, pad: int) -> list[dict]:
    from lmforge.tasks import get_task

    texts = [ex.text for ex in get_task("sequence").read(cfg.file, cfg.text_field, cfg.label_field, need_label=False)]
    texts = [t for t in texts[:cfg.max_examples] if t.strip()]
    if not texts:
        raise ExportError(f"{cfg.file}: no texts to verify the export on")
    batches = []
    for start in range(0, len(texts), 16):
        rows = [tok.encode(t).ids[:lm.cfg.max_seq_len] or [pad] for t in texts[start:start + 16]]
        T = max(map(len, rows))
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, x in enumerate(rows):
            ids[r, :len(x)], mask[r, :len(x)] = torch.tensor(x), 1
        batches.append({"ids": ids, "mask": mask, "source": f"{Path(cfg.file).name}[{start}:{start + len(rows)}]"})
    return batches


def _empty_past(lm: LoadedLM, batch: int) -> np.ndarray:
    c = lm.cfg
    return np.zeros((c.n_layer, batch, c.n_head, 0, c.head_dim), dtype=np.float32)


def _diff(got: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    d = np.abs(got - ref)[mask.astype(bool)]  # real positions only: padded ones are never read
    return float(d.max()) if d.size else 0.0


def _agreement(got: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Share of real positions where both sides pick the same most likely next token."""
    same = (got.argmax(-1) == ref.argmax(-1))[mask.astype(bool)]
    return float(same.mean()) if same.size else 1.0


def _check_decoder(session, lm: LoadedLM, batches: list[dict], g: torch.Generator) -> list[dict]:
    rows = []
    with torch.no_grad():
        for b in batches:  # whole sequences, empty past
            ref = lm.model(b["ids"], attention_mask=b["mask"])[0].numpy()
            past = _empty_past(lm, b["ids"].shape[0])
            got = session.run(None, {"input_ids": b["ids"].numpy(), "attention_mask": b["mask"].numpy(),
                                     "past_keys": past, "past_values": past})[0]
            rows.append({"inputs": b["source"], "shape": list(b["ids"].shape),
                         "max_abs_diff": _diff(got, ref, b["mask"].numpy()),
                         "top1_agreement": _agreement(got, ref, b["mask"].numpy())})
        # incremental: prompt 6, five single-token steps, one 3-token chunk, through the returned past
        total = min(14, lm.cfg.max_seq_len)
        ids = torch.randint(0, lm.cfg.vocab_size, (2, total), generator=g)
        ref = lm.model(ids)[0].numpy()
        keys = values = _empty_past(lm, 2)
        pos = 0
        for n in _incremental_plan(total):
            chunk = ids[:, pos:pos + n].numpy()
            logits, keys, values = session.run(None, {"input_ids": chunk, "attention_mask": np.ones((2, pos + n), np.int64),
                                                      "past_keys": keys, "past_values": values})
            rows.append({"inputs": f"incremental: {n} token(s) after a past of {pos}", "shape": [2, n],
                         "max_abs_diff": float(np.abs(logits - ref[:, pos:pos + n]).max()),
                         "top1_agreement": _agreement(logits, ref[:, pos:pos + n], np.ones((2, n)))})
            pos += n
    return rows


def _check_encoder(session, lm: LoadedLM, batches: list[dict]) -> list[dict]:
    wrapped = _EncoderStates(lm.body)
    rows = []
    with torch.no_grad():
        for b in batches:
            h, e = (x.numpy() for x in wrapped(b["ids"], b["mask"]))
            got_h, got_e = session.run(None, {"input_ids": b["ids"].numpy(), "attention_mask": b["mask"].numpy()})
            diff = max(_diff(got_h, h, b["mask"].numpy()), float(np.abs(got_e - e).max()))
            cos = (normalize(got_e) * normalize(e)).sum(-1)
            rows.append({"inputs": b["source"], "shape": list(b["ids"].shape), "max_abs_diff": diff,
                         "min_embedding_cosine": float(cos.min())})
    return rows


def _export_graph(lm: LoadedLM, path: Path) -> None:
    c = lm.cfg
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("seq", max=c.max_seq_len)
    with quiet():
        if lm.causal:
            past = torch.export.Dim("past", max=c.max_seq_len - 1)
            total = torch.export.Dim("total", max=c.max_seq_len)
            kv = torch.zeros(c.n_layer, 2, c.n_head, 4, c.head_dim)
            example = (torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 7, dtype=torch.long), kv, kv.clone())
            torch.onnx.export(_DecoderStep(lm.model), example, str(path), dynamo=True, verbose=False, external_data=False,
                              input_names=["input_ids", "attention_mask", "past_keys", "past_values"],
                              output_names=["logits", "present_keys", "present_values"],
                              dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: total},
                                              "past_keys": {1: batch, 3: past}, "past_values": {1: batch, 3: past}})
        else:
            example = (torch.zeros(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
            torch.onnx.export(_EncoderStates(lm.body), example, str(path), dynamo=True, verbose=False,
                              external_data=False, input_names=["input_ids", "attention_mask"],
                              output_names=["last_hidden_state", "sentence_embedding"],
                              dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})


def export_lm_onnx(cfg: ExportConfig) -> dict:
    """Export, verify and (optionally) quantize a language model / encoder; returns ``export.json``."""
    import onnx

    lm = load_language_model(cfg.model)
    lm.model.cpu().eval()
    kind = "causal_lm" if lm.causal else "encoder"
    if lm.causal and not hasattr(lm.model, "head"):
        raise ExportError(f"{lm.source}: a decoder without an LM head cannot generate; nothing to export")
    if cfg.out:
        out = Path(cfg.out)
    elif kind_of(lm.source) == "checkpoint":  # <pretrain>/checkpoints/step_N → <pretrain>/export/onnx
        out = lm.source.parent.parent / "export" / "onnx"
    elif cfg.model == "minilm":  # never inside site-packages
        out = Path("runs") / "minilm" / "export" / "onnx"
    else:
        out = lm.source / "export" / "onnx"
    tmp = staging(out)
    try:
        tok, specials = load_for_model(lm.tokenizer_dir)
        t0 = time.time()
        _export_graph(lm, tmp / "model.onnx")
        onnx.checker.check_model(str(tmp / "model.onnx"))
        export_s = time.time() - t0
        g = torch.Generator().manual_seed(0)
        batches = _synthetic(lm, specials.pad, g) + (_file_batches(lm, cfg, tok, specials.pad) if cfg.file else [])

        def check(path: Path) -> list[dict]:
            s = session(path)
            return _check_decoder(s, lm, batches, g.manual_seed(1)) if lm.causal else _check_encoder(s, lm, batches)

        rows = check(tmp / "model.onnx")
        worst = check_tolerance(tmp, rows, cfg.tolerance)
        c = lm.cfg
        inputs = {"input_ids": "int64 [batch, seq]", "attention_mask": "int64 [batch, seq]"}
        outputs = {"last_hidden_state": "float32 [batch, seq, d_model]", "sentence_embedding": "float32 [batch, d_model] (masked mean)"}
        if lm.causal:
            inputs = {"input_ids": "int64 [batch, seq]", "attention_mask": "int64 [batch, past + seq]",
                      "past_keys": "float32 [layers, batch, heads, past, head_dim]", "past_values": "same as past_keys"}
            outputs = {"logits": "float32 [batch, seq, vocab]",
                       "present_keys": "float32 [layers, batch, heads, past + seq, head_dim]",
                       "present_values": "same as present_keys"}
        record = {"format": "onnx", "kind": kind,
                  "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
                  "source": str(lm.source), "inputs": inputs, "outputs": outputs, "max_seq_len": c.max_seq_len,
                  "export_seconds": round(export_s, 2),
                  "verification": {"tolerance": cfg.tolerance, "max_abs_diff": worst, "checks": rows},
                  "files": {"model.onnx": os.path.getsize(tmp / "model.onnx")}}
        if cfg.quantize == "int8":
            method = quantize_int8(tmp / "model.onnx", tmp / "model.int8.onnx")
            q_rows = check(tmp / "model.int8.onnx")
            record["int8"] = {"method": method,
                              "max_abs_diff": max(r["max_abs_diff"] for r in q_rows), "checks": q_rows,
                              **({"min_top1_agreement": min(r["top1_agreement"] for r in q_rows)} if lm.causal else
                                 {"min_embedding_cosine": min(r["min_embedding_cosine"] for r in q_rows)}),
                              "bytes": os.path.getsize(tmp / "model.int8.onnx")}
            record["files"]["model.int8.onnx"] = record["int8"]["bytes"]
        copy_files(lm.tokenizer_dir, tmp)
        meta = {"kind": kind, "model": asdict(c), "source": str(lm.source), "step": lm.step,
                "pooling": None if lm.causal else "mean"}
        (tmp / LM_META_FILE).write_text(json.dumps(meta, indent=2))
        return publish(tmp, out, record, lm_model_card(lm, record))
    except BaseException:  # out of space, a failed check, Ctrl-C: give the space back
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def lm_model_card(lm: LoadedLM, record: dict) -> str:
    """A Hugging Face style model card from the export's own records."""
    c, v = lm.cfg, record["verification"]
    causal = lm.causal
    lines = ["---", "library_name: onnx", f"pipeline_tag: {'text-generation' if causal else 'feature-extraction'}",
             "tags: [lmforge, onnx]", "---", "", f"# {lm.source.name} (ONNX)", "",
             f"A {'causal language model' if causal else 'text encoder'} exported by lmforge from `{lm.source}`"
             + (f" (training step {lm.step})." if lm.step is not None else "."), "",
             "## Model", "",
             f"- {c.arch}, {c.n_layer} layers, {c.n_head} heads, d_model {c.d_model}, vocabulary {c.vocab_size}, "
             f"at most {c.max_seq_len} tokens", "",
             "## Inputs and outputs", ""]
    lines += [f"- input `{k}`: {t}" for k, t in record["inputs"].items()]
    lines += [f"- output `{k}`: {t}" for k, t in record["outputs"].items()]
    lines += ["", "## Verification", "",
              f"onnxruntime vs PyTorch on {len(v['checks'])} checks"
              + (" (whole sequences and incremental decoding through the past keys/values)" if causal else "")
              + f": max |Δ| = {v['max_abs_diff']:.2e} (tolerance {v['tolerance']:.0e}).", ""]
    if "int8" in record:
        q = record["int8"]
        agree = (f"most likely next token the same as fp32 at ≥ {q['min_top1_agreement']:.1%} of checked positions"
                 if causal else f"embedding cosine to fp32 ≥ {q['min_embedding_cosine']:.4f}")
        lines += [f"int8 (`model.int8.onnx`): max |Δ| = {q['max_abs_diff']:.3g}, {agree}, "
                  f"{record['int8']['bytes'] / 1e6:.1f} MB vs {record['files']['model.onnx'] / 1e6:.1f} MB.", ""]
    use = ("Feed the prompt with an empty past (past axis 0), then one token at a time with the returned "
           "`present_*` as the next `past_*`; `attention_mask` covers past + new tokens. `lmforge serve` does this."
           if causal else
           "Feed `input_ids` and `attention_mask` from the tokenizer in this folder; `sentence_embedding` is the mean of the "
           "hidden states over real tokens, `sentence_embedding` (L2-normalize it for cosine similarity).")
    lines += ["## Use", "", use, "", "## Limitations", "",
              "Knows only what its training data held; no safety tuning; inputs beyond the maximum length are not "
              "accepted; int8 weights change the outputs slightly (figures above).", ""]
    return "\n".join(lines)
