"""Hugging Face interop for GPT-2, BERT and Llama (no grouped-query attention): load ``transformers`` checkpoints into our modules
and write ours as HF model directories (config.json + model.safetensors + tokenizer files).

Mapping notes: GPT-2 stores projections as ``Conv1D`` (weight (in, out), transposed against
``nn.Linear``) with q/k/v fused in ``c_attn``; BERT is post-norm (``attention.output.LayerNorm``
is our ``norm1``, ``output.LayerNorm`` our ``norm2``) with a LayerNorm on the embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from lmforge.models.config import ModelConfig
from lmforge.errors import ModelError
from lmforge.models.transformer import LanguageModel, TransformerBody, build_decoder_lm, build_encoder_mlm
from lmforge.models.weights import read_state_dict
from lmforge.tokenizer.io import copy_files

# -- configs ------------------------------------------------------------------------------------


def config_from_hf(hf_cfg) -> ModelConfig:
    t = hf_cfg.model_type
    if t == "gpt2":
        act = hf_cfg.activation_function
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise ModelError(f"unsupported GPT-2 activation {act!r}")
        return ModelConfig(arch="decoder", vocab_size=hf_cfg.vocab_size, n_layer=hf_cfg.n_layer, n_head=hf_cfg.n_head,
                           d_model=hf_cfg.n_embd, d_ff=hf_cfg.n_inner or 4 * hf_cfg.n_embd,
                           max_seq_len=hf_cfg.n_positions, pos="learned",
                           mlp="gelu" if act == "gelu" else "gelu_tanh", norm="layernorm", norm_position="pre",
                           norm_eps=hf_cfg.layer_norm_epsilon, bias=True, dropout=hf_cfg.resid_pdrop,
                           tie_embeddings=True)
    if t == "bert":
        act = hf_cfg.hidden_act
        if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
            raise ModelError(f"unsupported BERT activation {act!r}")
        return ModelConfig(arch="encoder", vocab_size=hf_cfg.vocab_size, n_layer=hf_cfg.num_hidden_layers,
                           n_head=hf_cfg.num_attention_heads, d_model=hf_cfg.hidden_size, d_ff=hf_cfg.intermediate_size,
                           max_seq_len=hf_cfg.max_position_embeddings, pos="learned",
                           mlp="gelu" if act == "gelu" else "gelu_tanh", norm="layernorm", norm_position="post",
                           norm_eps=hf_cfg.layer_norm_eps, bias=True, dropout=hf_cfg.hidden_dropout_prob,
                           tie_embeddings=bool(getattr(hf_cfg, "tie_word_embeddings", True)),
                           type_vocab_size=hf_cfg.type_vocab_size, embedding_norm=True,
                           final_norm=False)
    if t == "llama":
        if hf_cfg.num_key_value_heads != hf_cfg.num_attention_heads:
            raise ModelError("Llama checkpoints with grouped-query attention (num_key_value_heads < num_attention_heads) "
                             "are not supported yet")
        scaling = getattr(hf_cfg, "rope_scaling", None) or {}
        if scaling.get("rope_type", scaling.get("type", "default")) != "default":
            raise ModelError(f"Llama rope scaling {scaling} is not supported yet (only plain RoPE)")
        if hf_cfg.hidden_act != "silu":
            raise ModelError(f"unsupported Llama activation {hf_cfg.hidden_act!r}")
        return ModelConfig(arch="decoder", vocab_size=hf_cfg.vocab_size, n_layer=hf_cfg.num_hidden_layers,
                           n_head=hf_cfg.num_attention_heads, d_model=hf_cfg.hidden_size, d_ff=hf_cfg.intermediate_size,
                           max_seq_len=hf_cfg.max_position_embeddings, pos="rope",
                           rope_theta=float(_rope_theta(hf_cfg)), mlp="swiglu", norm="rmsnorm",
                           norm_position="pre", norm_eps=hf_cfg.rms_norm_eps,
                           bias=bool(getattr(hf_cfg, "attention_bias", False)), dropout=0.0,
                           tie_embeddings=bool(hf_cfg.tie_word_embeddings))
    raise ModelError(f"unsupported Hugging Face model_type {t!r} (supported: gpt2, bert, llama)")


def _rope_theta(hf_cfg) -> float:
    theta = getattr(hf_cfg, "rope_theta", None)
    if theta is None:
        params = getattr(hf_cfg, "rope_parameters", None) or {}
        theta = params.get("rope_theta", 10000.0)
    return theta


def config_to_hf(cfg: ModelConfig):
    from transformers import BertConfig, GPT2Config, LlamaConfig

    if cfg.arch == "decoder" and cfg.pos == "rope":
        if cfg.mlp != "swiglu" or cfg.norm != "rmsnorm" or cfg.norm_position != "pre" or cfg.bias:
            raise ModelError("only Llama-shaped RoPE decoders (SwiGLU, RMSNorm, pre-norm, no biases) can be exported "
                             "as HF Llama")
        return LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ff_dim,
                           num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                           num_key_value_heads=cfg.n_head, max_position_embeddings=cfg.max_seq_len,
                           rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
                           attention_bias=False, mlp_bias=False)
    if cfg.arch == "decoder":
        if cfg.pos != "learned" or cfg.norm != "layernorm" or cfg.norm_position != "pre" or cfg.mlp == "swiglu" \
                or not cfg.bias or not cfg.tie_embeddings:
            raise ModelError("only GPT-2-shaped decoders (learned positions, pre-LayerNorm, GELU MLP, biases, tied "
                             "embeddings) can be exported as HF GPT-2")
        return GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.max_seq_len, n_embd=cfg.d_model,
                          n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=cfg.ff_dim,
                          activation_function="gelu" if cfg.mlp == "gelu" else "gelu_new",
                          layer_norm_epsilon=cfg.norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                          attn_pdrop=cfg.dropout, tie_word_embeddings=True,
                          # GPT-2's defaults (50256) name ids of the OpenAI vocabulary, not ours
                          bos_token_id=None, eos_token_id=None)
    if cfg.pos != "learned" or cfg.norm_position != "post" or cfg.norm != "layernorm" or not cfg.embedding_norm \
            or cfg.mlp == "swiglu":
        raise ModelError("only BERT-shaped encoders (learned positions, post-LayerNorm, embedding LayerNorm, GELU MLP) "
                         "can be exported as HF BERT")
    return BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layer,
                      num_attention_heads=cfg.n_head, intermediate_size=cfg.ff_dim,
                      hidden_act="gelu" if cfg.mlp == "gelu" else "gelu_new", max_position_embeddings=cfg.max_seq_len,
                      type_vocab_size=max(cfg.type_vocab_size, 1), layer_norm_eps=cfg.norm_eps,
                      hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                      tie_word_embeddings=cfg.tie_embeddings)


# -- GPT-2 state dicts ---------------------------------------------------------------------------


def gpt2_to_ours(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    p = "transformer." if "transformer.wte.weight" in sd else ""
    out = {"body.embed.tok.weight": sd[f"{p}wte.weight"], "body.embed.pos.weight": sd[f"{p}wpe.weight"],
           "body.final_norm.weight": sd[f"{p}ln_f.weight"], "body.final_norm.bias": sd[f"{p}ln_f.bias"]}
    for i in range(cfg.n_layer):
        h, b = f"{p}h.{i}.", f"body.blocks.{i}."
        out[b + "attn.qkv_proj.weight"] = sd[h + "attn.c_attn.weight"].t()  # Conv1D (C, 3C) → Linear (3C, C)
        out[b + "attn.qkv_proj.bias"] = sd[h + "attn.c_attn.bias"]
        out[b + "attn.o_proj.weight"] = sd[h + "attn.c_proj.weight"].t()
        out[b + "attn.o_proj.bias"] = sd[h + "attn.c_proj.bias"]
        out[b + "mlp.up.weight"] = sd[h + "mlp.c_fc.weight"].t()
        out[b + "mlp.up.bias"] = sd[h + "mlp.c_fc.bias"]
        out[b + "mlp.down.weight"] = sd[h + "mlp.c_proj.weight"].t()
        out[b + "mlp.down.bias"] = sd[h + "mlp.c_proj.bias"]
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[b + f"{ours}.weight"] = sd[h + f"{theirs}.weight"]
            out[b + f"{ours}.bias"] = sd[h + f"{theirs}.bias"]
    out["head.proj.weight"] = out["body.embed.tok.weight"]
    return out


def ours_to_gpt2(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {"transformer.wte.weight": sd["body.embed.tok.weight"], "transformer.wpe.weight": sd["body.embed.pos.weight"],
           "transformer.ln_f.weight": sd["body.final_norm.weight"], "transformer.ln_f.bias": sd["body.final_norm.bias"]}
    for i in range(cfg.n_layer):
        h, b = f"transformer.h.{i}.", f"body.blocks.{i}."
        out[h + "attn.c_attn.weight"] = sd[b + "attn.qkv_proj.weight"].t()
        out[h + "attn.c_attn.bias"] = sd[b + "attn.qkv_proj.bias"]
        out[h + "attn.c_proj.weight"] = sd[b + "attn.o_proj.weight"].t()
        out[h + "attn.c_proj.bias"] = sd[b + "attn.o_proj.bias"]
        out[h + "mlp.c_fc.weight"] = sd[b + "mlp.up.weight"].t()
        out[h + "mlp.c_fc.bias"] = sd[b + "mlp.up.bias"]
        out[h + "mlp.c_proj.weight"] = sd[b + "mlp.down.weight"].t()
        out[h + "mlp.c_proj.bias"] = sd[b + "mlp.down.bias"]
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[h + f"{theirs}.weight"] = sd[b + f"{ours}.weight"]
            out[h + f"{theirs}.bias"] = sd[b + f"{ours}.bias"]
    out["lm_head.weight"] = sd["body.embed.tok.weight"]
    return {k: v.contiguous() for k, v in out.items()}


# -- Llama state dicts ---------------------------------------------------------------------------

_LLAMA_LAYER = [("attn.o_proj", "self_attn.o_proj"), ("mlp.gate", "mlp.gate_proj"), ("mlp.up", "mlp.up_proj"),
                ("mlp.down", "mlp.down_proj"), ("norm1", "input_layernorm"), ("norm2", "post_attention_layernorm")]


def llama_to_ours(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {"body.embed.tok.weight": sd["model.embed_tokens.weight"], "body.final_norm.weight": sd["model.norm.weight"]}
    for i in range(cfg.n_layer):
        h, b = f"model.layers.{i}.", f"body.blocks.{i}."
        out[b + "attn.qkv_proj.weight"] = torch.cat([sd[h + f"self_attn.{n}_proj.weight"] for n in "qkv"], 0)
        for ours, theirs in _LLAMA_LAYER:
            out[b + ours + ".weight"] = sd[h + theirs + ".weight"]
    out["head.proj.weight"] = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return out


def ours_to_llama(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {"model.embed_tokens.weight": sd["body.embed.tok.weight"], "model.norm.weight": sd["body.final_norm.weight"],
           "lm_head.weight": sd["head.proj.weight"]}
    for i in range(cfg.n_layer):
        h, b = f"model.layers.{i}.", f"body.blocks.{i}."
        for n, part in zip("qkv", sd[b + "attn.qkv_proj.weight"].chunk(3, 0)):
            out[h + f"self_attn.{n}_proj.weight"] = part
        for ours, theirs in _LLAMA_LAYER:
            out[h + theirs + ".weight"] = sd[b + ours + ".weight"]
    return {k: v.contiguous() for k, v in out.items()}


# -- BERT state dicts ------------------------------------------------------------------------------

_BERT_QKV = ("attention.self.query", "attention.self.key", "attention.self.value")
_BERT_LAYER = [("attn.o_proj", "attention.output.dense"),
               ("norm1", "attention.output.LayerNorm"), ("mlp.up", "intermediate.dense"),
               ("mlp.down", "output.dense"), ("norm2", "output.LayerNorm")]
_BERT_EMB = [("body.embed.tok", "embeddings.word_embeddings"), ("body.embed.pos", "embeddings.position_embeddings"),
             ("body.embed.token_type", "embeddings.token_type_embeddings"), ("body.embed.norm", "embeddings.LayerNorm")]
_BERT_HEAD = [("head.dense", "cls.predictions.transform.dense"), ("head.norm", "cls.predictions.transform.LayerNorm")]


def _bert_pairs(cfg: ModelConfig, prefix: str, with_head: bool) -> list[tuple[str, str]]:
    pairs = []
    for ours, theirs in _BERT_EMB:
        if ours == "body.embed.token_type" and cfg.type_vocab_size == 0:
            continue  # no token types: see ours_to_bert
        kinds = ("weight",) if ours != "body.embed.norm" else ("weight", "bias")
        pairs += [(f"{ours}.{k}", f"{prefix}{theirs}.{k}") for k in kinds]
    for i in range(cfg.n_layer):
        for ours, theirs in _BERT_LAYER:
            pairs += [(f"body.blocks.{i}.{ours}.{k}", f"{prefix}encoder.layer.{i}.{theirs}.{k}") for k in ("weight", "bias")]
    if with_head:
        for ours, theirs in _BERT_HEAD:
            pairs += [(f"{ours}.{k}", f"{theirs}.{k}") for k in ("weight", "bias")]
        pairs.append(("head.proj.bias", "cls.predictions.bias"))
    return pairs


def bert_to_ours(sd: dict[str, torch.Tensor], cfg: ModelConfig, with_head: bool) -> dict[str, torch.Tensor]:
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in sd else ""
    out = {ours: sd[theirs] for ours, theirs in _bert_pairs(cfg, prefix, with_head)}
    for i in range(cfg.n_layer):
        for k in ("weight", "bias"):
            out[f"body.blocks.{i}.attn.qkv_proj.{k}"] = torch.cat(
                [sd[f"{prefix}encoder.layer.{i}.{name}.{k}"] for name in _BERT_QKV], 0)
    if with_head:  # an untied MLM decoder (tie_word_embeddings: false) has a matrix of its own
        out["head.proj.weight"] = (out["body.embed.tok.weight"] if cfg.tie_embeddings
                                   else sd["cls.predictions.decoder.weight"])
    return out


def ours_to_bert(sd: dict[str, torch.Tensor], cfg: ModelConfig, with_head: bool) -> dict[str, torch.Tensor]:
    prefix = "bert." if with_head else ""
    out = {theirs: sd[ours].contiguous() for ours, theirs in _bert_pairs(cfg, prefix, with_head)}
    if cfg.type_vocab_size == 0:  # HF BERT always has token types: one zero row adds nothing
        out[f"{prefix}embeddings.token_type_embeddings.weight"] = torch.zeros(1, cfg.d_model)
    for i in range(cfg.n_layer):
        for k in ("weight", "bias"):
            for name, part in zip(_BERT_QKV, sd[f"body.blocks.{i}.attn.qkv_proj.{k}"].chunk(3, 0)):
                out[f"{prefix}encoder.layer.{i}.{name}.{k}"] = part.contiguous()
    if with_head:
        out["cls.predictions.decoder.weight"] = sd["body.embed.tok.weight" if cfg.tie_embeddings else "head.proj.weight"]
        out["cls.predictions.decoder.bias"] = sd["head.proj.bias"]
    return out


# -- public API ----------------------------------------------------------------------------------


def from_hf(path_or_model) -> LanguageModel | TransformerBody:
    """Our model from an HF directory or a ``transformers`` model object.

    GPT-2 (``GPT2LMHeadModel``/``GPT2Model``) → decoder LM; ``BertForMaskedLM`` → encoder MLM;
    a bare ``BertModel`` (no MLM head, e.g. sentence encoders) → :class:`TransformerBody`.
    """
    if isinstance(path_or_model, (str, Path)):
        from transformers import AutoConfig

        hf_cfg = AutoConfig.from_pretrained(str(path_or_model))
        sd = read_state_dict(Path(path_or_model))
    else:
        hf_cfg = path_or_model.config
        sd = path_or_model.state_dict()
    cfg = config_from_hf(hf_cfg)
    if cfg.arch == "decoder":
        model = build_decoder_lm(cfg)
        convert = llama_to_ours if hf_cfg.model_type == "llama" else gpt2_to_ours
        model.load_state_dict(convert(sd, cfg), strict=True)
        return model
    with_head = "cls.predictions.transform.dense.weight" in sd
    if with_head:
        model = build_encoder_mlm(cfg)
        model.load_state_dict(bert_to_ours(sd, cfg, True), strict=True)
        return model
    body = TransformerBody(cfg, causal=False)
    body.load_state_dict({k.removeprefix("body."): v for k, v in bert_to_ours(sd, cfg, False).items()}, strict=True)
    return body


def save_with_tokenizer(hf_model, out: Path, tokenizer_dir: Optional[str | Path]) -> None:
    """``save_pretrained`` plus the tokenizer's files (only those; a model folder used as the
    tokenizer source brings no stray configs)."""
    from transformers.utils import logging as hf_logging

    out.mkdir(parents=True, exist_ok=True)
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards: 100%" at every save is noise in our logs
    try:
        hf_model.save_pretrained(str(out), safe_serialization=True)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
    if tokenizer_dir is not None:
        copy_files(tokenizer_dir, out)


def to_hf(model: LanguageModel, out_dir: str | Path, tokenizer_dir: Optional[str | Path] = None):
    """Write ``model`` as an HF directory loadable by ``AutoModelForCausalLM``/``AutoModelForMaskedLM``."""
    from transformers import BertForMaskedLM, GPT2LMHeadModel, LlamaForCausalLM

    cfg = model.cfg
    hf_cfg = config_to_hf(cfg)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if cfg.arch == "decoder" and cfg.pos == "rope":
        hf = LlamaForCausalLM(hf_cfg)
        hf.load_state_dict(ours_to_llama(sd, cfg), strict=False)
    elif cfg.arch == "decoder":
        hf = GPT2LMHeadModel(hf_cfg)
        hf.load_state_dict(ours_to_gpt2(sd, cfg), strict=False)
    else:
        hf = BertForMaskedLM(hf_cfg)
        theirs = ours_to_bert(sd, cfg, True)
        missing, unexpected = hf.load_state_dict(theirs, strict=False)
        unexpected = [k for k in unexpected if "position_ids" not in k]
        if unexpected:
            raise RuntimeError(f"unexpected keys exporting to BERT: {unexpected}")
    out = Path(out_dir)
    save_with_tokenizer(hf, out, tokenizer_dir)
    (out / "lmforge_model.json").write_text(json.dumps({"model": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}, indent=2))
    return hf
