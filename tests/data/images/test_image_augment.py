"""Batched image augmentation: determinism, identity when off, exact flips, range, each transform."""

import pytest
import torch

from lmforge.data.images.augment import Augmenter
from lmforge.data.images.config import ImageAugmentConfig

ALL = dict(enabled=True, rotation=20, translate=0.1, scale=[0.8, 1.2], hflip=0.5, vflip=0.5, resized_crop=[0.6, 1.0],
           brightness=0.4, contrast=0.4, noise=0.2, cutout=6)


def batch(b=16, c=1, h=12, w=10, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def run(cfg: ImageAugmentConfig, x, seed):
    return Augmenter(cfg)(x, torch.Generator().manual_seed(seed))


def test_same_seed_same_output_and_seed_matters():
    cfg, x = ImageAugmentConfig(**ALL), batch(c=3)
    a, b = run(cfg, x, 1), run(cfg, x, 1)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(cfg, x, 2))
    assert a.shape == x.shape and a.dtype == torch.float32


def test_disabled_is_identity():
    x = batch()
    assert torch.equal(run(ImageAugmentConfig(**{**ALL, "enabled": False}), x, 0), x)
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.equal(run(ImageAugmentConfig(), u8, 0), u8.float() / 255)


@pytest.mark.parametrize("key,dim", [("hflip", -1), ("vflip", -2)])
def test_flips_are_exact(key, dim):
    x = batch(c=3)
    assert torch.equal(run(ImageAugmentConfig(enabled=True, **{key: 1.0}), x, 0), x.flip(dim))
    half = run(ImageAugmentConfig(enabled=True, **{key: 0.5}), x, 0)
    flipped = [torch.equal(half[i], x[i].flip(dim)) for i in range(len(x))]
    kept = [torch.equal(half[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_output_stays_in_unit_range():
    y = run(ImageAugmentConfig(**{**ALL, "brightness": 1.0, "contrast": 1.0, "noise": 1.0}), batch(b=64), 3)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_identity_geometry_is_near_exact():
    x = batch()
    y = run(ImageAugmentConfig(enabled=True, scale=[1.0, 1.0]), x, 0)  # grid_sample at the pixel centres
    assert torch.allclose(y, x, atol=1e-5)


def test_rotation_180_turns_the_image():
    x = batch(h=9, w=9)
    y = run(ImageAugmentConfig(enabled=True, rotation=180.0), x, 0)
    # angles are uniform in ±180°: check against the angle-independent invariant, the centre pixel
    assert torch.allclose(y[:, :, 4, 4], x[:, :, 4, 4], atol=1e-5)


def test_translate_shifts_content():
    x = torch.zeros(1, 1, 10, 10)
    x[0, 0, 4:6, 4:6] = 1.0
    y = run(ImageAugmentConfig(enabled=True, translate=0.3), x.repeat(8, 1, 1, 1), 5)
    centres = [(yi[0] > 0.5).nonzero().float().mean(0) for yi in y]
    assert any((c - 4.5).abs().max() > 0.5 for c in centres)  # content moved
    assert all(abs(float(yi.sum()) - 4.0) < 1e-3 for yi in y)  # small shifts keep it whole


def test_cutout_zeroes_a_square():
    x = torch.ones(8, 1, 16, 16)
    y = run(ImageAugmentConfig(enabled=True, cutout=4), x, 0)
    zeros = (y == 0).sum(dim=(1, 2, 3))
    assert bool((zeros > 0).all()) and bool((zeros <= 16).all())
    assert bool(((y == 0) | (y == 1)).all())


def test_colour_jitter_and_noise_change_pixels():
    x = batch(b=8)
    for key, val in (("brightness", 0.5), ("contrast", 0.5), ("noise", 0.1)):
        y = run(ImageAugmentConfig(enabled=True, **{key: val}), x, 0)
        assert not torch.allclose(y, x) and y.shape == x.shape


def test_resized_crop_zooms_in():
    x = torch.zeros(1, 1, 20, 20)
    x[0, 0, 8:12, 8:12] = 1.0
    y = run(ImageAugmentConfig(enabled=True, resized_crop=[0.25, 0.25]), x.repeat(32, 1, 1, 1), 0)
    seen = [float((yi > 0.5).sum()) for yi in y if float(yi.sum()) > 1]
    assert seen and all(n > 16 for n in seen)  # a window of a quarter of the area: the square got bigger
