"""Masked-image pretraining (MAE, He et al. 2021) for our Vision Transformer.

Shapes: B = batch, C = channels, P = patch side, N = patches per image, K = patches kept
(visible), D = the encoder's width, E = the decoder's width.

A share ``mask_ratio`` of each image's patches is hidden at random; the encoder (the ViT's own
patch embedding, [CLS], positions, blocks and final norm) sees only the visible ones, so a step
costs about (1 − mask_ratio) of a full forward. A light decoder (its own width and depth, fresh
positions, one shared learned mask token) rebuilds every patch from the encoded visible ones plus
mask tokens, and the loss is the mean squared error of the *masked* patches' pixels, each patch
normalized by its own mean and variance (the paper's ``norm_pix_loss``, which it found gives
better features). Only the encoder is kept: :attr:`MaskedAutoencoder.vit` is a whole
:class:`~lmforge.models.vision.VisionTransformer` whose head fine-tuning replaces.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import nn

from lmforge.errors import ModelError
from lmforge.models.config import ModelConfig
from lmforge.models.layers import init_weights, make_norm
from lmforge.models.vision import VisionTransformer, encoder_blocks


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, N, P·P·C), patches in the row-major order of the ViT's patch embedding."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, p: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """The inverse of :func:`patchify`: (B, N, P·P·C) → (B, C, H, W)."""
    c, h, w = shape
    x = patches.reshape(patches.shape[0], h // p, w // p, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(patches.shape[0], c, h, w)


class MaskedAutoencoder(nn.Module):
    """A ViT encoder plus an MAE decoder; ``forward(x, generator)`` returns the reconstruction loss."""

    def __init__(self, vit: VisionTransformer, cfg: ModelConfig, in_shape: tuple[int, int, int], mask_ratio: float,
                 decoder_width: int, decoder_layers: int, decoder_heads: int):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ModelError(f"mask_ratio must be between 0 and 1 (exclusive); got {mask_ratio}")
        if decoder_width % decoder_heads:
            raise ModelError(f"decoder width {decoder_width} must be divisible by its {decoder_heads} heads")
        self.vit = vit
        self.patch = cfg.patch_size
        self.mask_ratio = mask_ratio
        n = vit.patches.n_patches
        self.n_keep = max(1, int(round(n * (1.0 - mask_ratio))))
        dec_cfg = replace(cfg, d_model=decoder_width, n_head=decoder_heads, n_layer=decoder_layers,
                          d_ff=4 * decoder_width, dropout=0.0)
        self.embed = nn.Linear(cfg.d_model, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.pos = nn.Parameter(torch.zeros(1, 1 + n, decoder_width))
        self.blocks = encoder_blocks(dec_cfg)
        self.norm = make_norm(dec_cfg)
        self.out = nn.Linear(decoder_width, self.patch * self.patch * in_shape[0])
        init_weights(self.embed)
        init_weights(self.blocks)
        init_weights(self.norm)
        init_weights(self.out)
        nn.init.normal_(self.mask_token, 0.0, 0.02)
        nn.init.normal_(self.pos, 0.0, 0.02)

    def encode_visible(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The encoder on [CLS] + the patches ``keep`` (B, K) names → (B, 1 + K, D)."""
        v = self.vit
        tokens = v.patches(x) + v.pos[:, 1:]  # (B, N, D)
        visible = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))  # (B, K, D)
        cls = (v.cls + v.pos[:, :1]).expand(x.shape[0], -1, -1)
        h = v.dropout(torch.cat([cls, visible], dim=1))
        for block in v.blocks:
            h = block(h, False, None, None, None)
        return v.final_norm(h)

    def _mask(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """A random order of each image's patches: (kept (B, K), hidden (B, N − K)) patch indices."""
        order = torch.rand(x.shape[0], self.vit.patches.n_patches, generator=generator, device=x.device).argsort(dim=1)
        return order[:, :self.n_keep], order[:, self.n_keep:]

    def _decode(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Every patch's predicted (normalized) pixels, (B, N, P·P·C), from the visible ones."""
        b, n = x.shape[0], self.vit.patches.n_patches
        z = self.embed(self.encode_visible(x, keep))  # (B, 1 + K, E)
        full = self.mask_token.expand(b, n, -1).clone()  # (B, N, E)
        full.scatter_(1, keep[..., None].expand(-1, -1, z.shape[-1]), z[:, 1:])
        h = torch.cat([z[:, :1], full], dim=1) + self.pos  # (B, 1 + N, E)
        for block in self.blocks:
            h = block(h, False, None, None, None)
        return self.out(self.norm(h)[:, 1:])

    @staticmethod
    def _targets(x: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each patch's pixels normalized by its own mean and std, with that mean and std."""
        t = patchify(x, p)
        mean, std = t.mean(-1, keepdim=True), (t.var(-1, keepdim=True) + 1e-6).sqrt()
        return (t - mean) / std, mean, std

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        keep, hidden = self._mask(x, generator)
        target, _, _ = self._targets(x, self.patch)
        err = (self._decode(x, keep) - target).pow(2).mean(-1)  # (B, N)
        return torch.gather(err, 1, hidden).mean()  # only the masked patches count

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        """(what the encoder saw — hidden patches zeroed —, the visible patches with the decoder's
        guess of the hidden ones in their place), both (B, C, H, W) in ``x``'s pixel space."""
        keep, hidden = self._mask(x, generator)
        _, mean, std = self._targets(x, self.patch)
        guess = self._decode(x, keep) * std + mean  # the per-patch normalization undone
        patches = patchify(x, self.patch)
        idx = hidden[..., None].expand(-1, -1, patches.shape[-1])
        shown = patches.scatter(1, idx, 0.0)
        filled = patches.scatter(1, idx, torch.gather(guess, 1, idx))
        shape = tuple(x.shape[1:])
        return unpatchify(shown, self.patch, shape), unpatchify(filled, self.patch, shape)
