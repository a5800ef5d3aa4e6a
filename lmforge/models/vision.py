"""Image classifiers: a small CNN baseline and a Vision Transformer built from our Transformer blocks.

Both map ``x`` float32 (B, C, H, W) → logits (B, K). Shapes: B = batch, C = channels,
H/W = image height/width, P = patch side, N = number of patches, D = d_model, K = outputs.

The ViT is the encoder of :mod:`lmforge.models.transformer` with patches instead of tokens:
the blocks are the same :class:`~lmforge.models.layers.Block` objects, run non-causally.
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.errors import ModelError
from lmforge.models.config import ModelConfig
from lmforge.models.layers import MLP, Block, MultiHeadAttention, SwiGLU, init_weights, make_norm

IMAGE_ARCHS = ("cnn", "vit")


def encoder_blocks(cfg: ModelConfig) -> nn.ModuleList:
    """``cfg.n_layer`` blocks exactly as :class:`TransformerBody` builds them, without RoPE
    (images and tables use learned or per-feature embeddings instead). Run them with
    ``block(x, False, None, None, None)``: non-causal, no mask, no positions, no cache."""
    if cfg.d_model % cfg.n_head:
        raise ModelError(f"d_model={cfg.d_model} must be divisible by n_head={cfg.n_head}")
    mlp = SwiGLU if cfg.mlp == "swiglu" else MLP
    return nn.ModuleList(
        Block(MultiHeadAttention(cfg, i, None), mlp(cfg), make_norm(cfg), make_norm(cfg), cfg.norm_position == "pre")
        for i in range(cfg.n_layer))


class SmallCNN(nn.Module):
    """The classic baseline: [conv 3x3 → (BN) → ReLU → max-pool 2] per ``conv_channels`` entry,
    flatten, [linear → (BN) → ReLU → dropout] per ``hidden`` size, then a linear layer to K.

    The pool is skipped once the map is 2 px or smaller, so 8x8 digits take any depth."""

    def __init__(self, cfg: ModelConfig, in_shape: tuple[int, int, int], num_outputs: int):
        super().__init__()
        c, h, w = in_shape
        stages: list[nn.Module] = []
        for out in cfg.conv_channels:
            # no conv bias before BatchNorm: BN's own shift makes it redundant
            stages += [nn.Conv2d(c, out, 3, padding=1, bias=not cfg.batch_norm)]
            stages += [nn.BatchNorm2d(out)] if cfg.batch_norm else []
            stages += [nn.ReLU()]
            if min(h, w) > 2:
                stages += [nn.MaxPool2d(2)]
                h, w = h // 2, w // 2
            c = out
        self.features = nn.Sequential(*stages)
        layers: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for size in cfg.hidden:
            layers += [nn.Linear(width, size, bias=not cfg.batch_norm)]
            layers += [nn.BatchNorm1d(size)] if cfg.batch_norm else []
            layers += [nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = size
        layers += [nn.Linear(width, num_outputs)]
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, C', H', W') → (B, K)


class PatchEmbedding(nn.Module):
    """Cut the image into P x P patches and project each to d_model (one strided conv)."""

    def __init__(self, cfg: ModelConfig, in_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = in_shape
        p = cfg.patch_size
        if h % p or w % p:
            raise ModelError(f"patch_size={p} does not divide the image size {h}x{w} "
                             f"(choose a patch_size that divides both {h} and {w})")
        self.n_patches = (h // p) * (w // p)
        self.proj = nn.Conv2d(c, cfg.d_model, kernel_size=p, stride=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, H/P, W/P) → (B, N, D)


class VisionTransformer(nn.Module):
    """ViT: patches + [CLS] + learned positions → dropout → our blocks (non-causal) → norm →
    linear head on the [CLS] position."""

    def __init__(self, cfg: ModelConfig, in_shape: tuple[int, int, int], num_outputs: int):
        super().__init__()
        self.patches = PatchEmbedding(cfg, in_shape)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.patches.n_patches, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = encoder_blocks(cfg)
        self.final_norm = make_norm(cfg) if cfg.final_norm else nn.Identity()
        self.head = nn.Linear(cfg.d_model, num_outputs)
        init_weights(self)
        nn.init.normal_(self.cls, 0.0, 0.02)
        nn.init.normal_(self.pos, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x)  # (B, N, D)
        cls = self.cls.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        h = self.dropout(torch.cat([cls, tokens], dim=1) + self.pos)  # (B, 1 + N, D)
        for block in self.blocks:
            h = block(h, False, None, None, None)  # positions are only read by RoPE, which ViT does not use
        return self.head(self.final_norm(h)[:, 0])  # (B, K)


def build_image_model(cfg: ModelConfig, in_shape: tuple[int, int, int], num_outputs: int) -> nn.Module:
    """The image classifier ``cfg.arch`` names, for (C, H, W) inputs and ``num_outputs`` classes."""
    if len(in_shape) != 3:
        raise ModelError(f"image models take (channels, height, width) inputs; got in_shape={tuple(in_shape)}")
    in_shape = tuple(int(s) for s in in_shape)
    if cfg.arch == "cnn":
        return SmallCNN(cfg, in_shape, num_outputs)
    if cfg.arch == "vit":
        return VisionTransformer(cfg, in_shape, num_outputs)
    raise ModelError(f"model.arch={cfg.arch!r} is not an image model; choose one of {', '.join(IMAGE_ARCHS)}")


def image_model_from_record(cfg: ModelConfig, record: dict) -> nn.Module:
    """The model a saved image model's record (``in_shape``, ``num_outputs``) describes."""
    return build_image_model(cfg, tuple(record["in_shape"]), int(record["num_outputs"]))
