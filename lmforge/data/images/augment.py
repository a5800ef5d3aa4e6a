"""Train-time image augmentation on whole batches, seeded by a ``torch.Generator``.

One affine resampling (``affine_grid`` + ``grid_sample``) does rotation, translation, zoom and
random resized crop together; flips are exact index flips; then brightness and contrast jitter,
Gaussian noise and cutout. Each transform draws one set of random numbers per batch from the
generator, so the same generator state gives the same output, and a disabled transform draws
nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lmforge.data.images.config import ImageAugmentConfig

CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratios of the random resized crop (as torchvision)


class Augmenter:
    """``Augmenter(cfg)(x, generator)``: a batch in, the same batch augmented out (per image randomness)."""

    def __init__(self, cfg: ImageAugmentConfig):
        self.cfg = cfg

    @property
    def geometric(self) -> bool:
        c = self.cfg
        return bool(c.rotation or c.translate or c.scale or c.resized_crop)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """float32 (B, C, H, W) in [0, 1] → augmented float32 (B, C, H, W) in [0, 1] (uint8 input is
        scaled by 1/255 first); the input unchanged when augmentation is disabled."""
        c = self.cfg
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if not c.enabled:
            return x
        b, _, h, w = x.shape

        def uniform(lo: float, hi: float) -> torch.Tensor:  # (B,) on x's device
            return (lo + (hi - lo) * torch.rand(b, generator=generator, device=generator.device)).to(x.device)

        if self.geometric:
            theta = self._theta(b, h, w, uniform).to(x.device)
            x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False),
                              mode="bilinear", padding_mode="zeros", align_corners=False)
        for p, dim in ((c.hflip, -1), (c.vflip, -2)):
            if p > 0:
                flip = (uniform(0, 1) < p).view(b, 1, 1, 1)
                x = torch.where(flip, x.flip(dim), x)
        if c.brightness > 0:
            x = x * uniform(1 - c.brightness, 1 + c.brightness).view(b, 1, 1, 1)
        if c.contrast > 0:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
            x = (x - mean) * uniform(1 - c.contrast, 1 + c.contrast).view(b, 1, 1, 1) + mean
        if c.noise > 0:
            x = x + c.noise * torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
        x = x.clamp(0.0, 1.0)
        if c.cutout > 0:
            x = x.masked_fill(self._cutout(b, h, w, uniform, x.device), 0.0)
        return x

    def _theta(self, b: int, h: int, w: int, uniform) -> torch.Tensor:
        """(B, 2, 3) affine maps from output to input coordinates (normalized to [-1, 1])."""
        c = self.cfg
        one = torch.ones(b)
        cos, sin = one, torch.zeros(b)
        if c.rotation:
            angle = uniform(-c.rotation, c.rotation).cpu() * (math.pi / 180)
            cos, sin = torch.cos(angle), torch.sin(angle)
        zoom = uniform(*c.scale).cpu() if c.scale else one
        # rotation in pixel units, written in normalized coordinates (x spans w pixels, y spans h)
        a = torch.stack([torch.stack([cos, -sin * h / w], -1), torch.stack([sin * w / h, cos], -1)], 1) / zoom.view(b, 1, 1)
        t = torch.stack([2 * uniform(-c.translate, c.translate).cpu(), 2 * uniform(-c.translate, c.translate).cpu()], -1) \
            if c.translate else torch.zeros(b, 2)
        if c.resized_crop:  # sample the crop window: a (cw, ch) box centred at (cx, cy), inside the image
            area = uniform(*c.resized_crop).cpu()
            ratio = torch.exp(uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])).cpu())
            cw, ch = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
            cx, cy = (2 * uniform(0, 1).cpu() - 1) * (1 - cw), (2 * uniform(0, 1).cpu() - 1) * (1 - ch)
            box = torch.stack([cw, ch], -1)  # (B, 2)
            a, t = a * box.unsqueeze(-1), t * box + torch.stack([cx, cy], -1)
        return torch.cat([a, t.unsqueeze(-1)], dim=2)

    def _cutout(self, b: int, h: int, w: int, uniform, device: torch.device) -> torch.Tensor:
        """bool (B, 1, H, W): a square of side ``cutout`` per image, centred anywhere (it may be clipped)."""
        side = self.cfg.cutout
        top = (uniform(0, 1) * h).floor().long() - side // 2  # (B,)
        left = (uniform(0, 1) * w).floor().long() - side // 2
        rows = torch.arange(h, device=device).view(1, 1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, 1, w)
        top, left = top.view(b, 1, 1, 1), left.view(b, 1, 1, 1)
        return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
