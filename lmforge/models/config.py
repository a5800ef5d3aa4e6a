"""Schema of the ``model`` section and the named size presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional


@dataclass
class ModelConfig:
    """Architecture of a Transformer encoder or decoder. Shapes use B=batch, T=time, C=d_model."""

    arch: Literal["decoder", "encoder", "cnn", "vit", "linear", "mlp", "tab_transformer"] = field(default="decoder", metadata={"help": "text: decoder = GPT-style causal LM, encoder = BERT-style masked LM; images (data.kind: image): cnn, vit; tables (data.kind: tabular): linear, mlp, tab_transformer"})
    preset: Optional[str] = field(default=None, metadata={"help": "named size (tiny, mini, small, gpt2-small, bert-base, ...); explicit fields override it"})
    vocab_size: int = field(default=0, metadata={"min": 0, "help": "0 = take it from the tokenizer"})
    n_layer: int = field(default=4, metadata={"min": 1})
    n_head: int = field(default=4, metadata={"min": 1})
    d_model: int = field(default=256, metadata={"min": 8})
    d_ff: Optional[int] = field(default=None, metadata={"min": 1, "help": "MLP hidden size (default 4*d_model)"})
    max_seq_len: int = field(default=512, metadata={"min": 2, "help": "length of the position table / RoPE cache"})
    pos: Literal["learned", "rope"] = "learned"
    rope_theta: float = 10000.0
    mlp: Literal["gelu", "gelu_tanh", "swiglu"] = field(default="gelu_tanh", metadata={"help": "GPT-2 uses gelu_tanh, BERT gelu"})
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_position: Literal["pre", "post"] = field(default="pre", metadata={"help": "pre-norm (GPT-2) or post-norm (BERT)"})
    norm_eps: float = 1e-5
    bias: bool = True
    dropout: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    tie_embeddings: bool = True
    type_vocab_size: int = field(default=0, metadata={"min": 0, "help": "BERT token-type embeddings (2 for BERT checkpoints)"})
    embedding_norm: bool = field(default=False, metadata={"help": "LayerNorm after the embeddings (BERT)"})
    final_norm: bool = field(default=True, metadata={"help": "norm after the last block (pre-norm models)"})
    patch_size: int = field(default=4, metadata={"min": 1, "help": "vit: side of the square patches (must divide the image size)"})
    conv_channels: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "cnn: output channels of each conv + batch-norm + pool stage"})
    hidden: list[int] = field(default_factory=lambda: [128], metadata={"help": "cnn: fully connected layers before the output; mlp: hidden layer sizes"})
    batch_norm: bool = field(default=True, metadata={"help": "cnn / mlp: batch normalization after each conv / hidden layer"})

    def validate(self):
        if self.preset is not None and self.preset not in PRESETS:  # reported with the config's other problems
            import difflib

            near = difflib.get_close_matches(self.preset, list(PRESETS), n=1)
            yield "preset", (f"unknown preset {self.preset!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                             + f" (choose from {', '.join(PRESETS)})")
            return
        if self.arch in ("cnn", "linear", "mlp"):
            return
        if self.d_model % self.n_head:
            yield "d_model", f"must be divisible by n_head={self.n_head}; got {self.d_model}"
        if self.pos == "rope" and (self.d_model // max(self.n_head, 1)) % 2:
            yield "pos", "RoPE needs an even head size (d_model / n_head)"

    @property
    def is_text(self) -> bool:
        """A language model body (encoder/decoder) rather than an image or table model."""
        return self.arch in ("decoder", "encoder")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        return self.d_ff or 4 * self.d_model


PRESETS: dict[str, dict] = {
    # decoders (GPT-2 style unless noted)
    "tiny": dict(n_layer=2, n_head=2, d_model=64, max_seq_len=256),
    "mini": dict(n_layer=4, n_head=4, d_model=128, max_seq_len=512),
    "small": dict(n_layer=6, n_head=8, d_model=512, max_seq_len=1024),
    "gpt2-small": dict(arch="decoder", n_layer=12, n_head=12, d_model=768, max_seq_len=1024, mlp="gelu_tanh"),
    "gpt2-medium": dict(arch="decoder", n_layer=24, n_head=16, d_model=1024, max_seq_len=1024, mlp="gelu_tanh"),
    "llama-tiny": dict(arch="decoder", n_layer=4, n_head=4, d_model=256, pos="rope", mlp="swiglu", norm="rmsnorm",
                       bias=False, d_ff=688, norm_eps=1e-6),
    # encoders (BERT style)
    "bert-tiny": dict(arch="encoder", n_layer=2, n_head=2, d_model=128, max_seq_len=512, mlp="gelu",
                      norm_position="post", norm_eps=1e-12, type_vocab_size=2, embedding_norm=True, final_norm=False),
    "bert-mini": dict(arch="encoder", n_layer=4, n_head=4, d_model=256, max_seq_len=512, mlp="gelu",
                      norm_position="post", norm_eps=1e-12, type_vocab_size=2, embedding_norm=True, final_norm=False),
    "bert-base": dict(arch="encoder", n_layer=12, n_head=12, d_model=768, max_seq_len=512, mlp="gelu",
                      norm_position="post", norm_eps=1e-12, type_vocab_size=2, embedding_norm=True, final_norm=False),
}


def resolve(cfg: ModelConfig, explicit: set[str] | None = None) -> ModelConfig:
    """Apply ``cfg.preset``; fields the user set explicitly (``explicit``) win over the preset."""
    if cfg.preset is None:
        return cfg
    if cfg.preset not in PRESETS:
        raise ValueError(f"model.preset: unknown preset {cfg.preset!r}; choose from {', '.join(PRESETS)}")
    values = {k: v for k, v in PRESETS[cfg.preset].items() if not explicit or k not in explicit}
    return replace(cfg, **values)
