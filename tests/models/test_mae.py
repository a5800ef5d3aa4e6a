"""The masked autoencoder: patch order, what the encoder sees, what the loss counts."""

import pytest
import torch

from lmforge.config.schema import build
from lmforge.errors import ModelError
from lmforge.models.config import ModelConfig
from lmforge.models.mae import MaskedAutoencoder, patchify, unpatchify
from lmforge.models.vision import VisionTransformer

SHAPE = (2, 8, 12)  # channels, height, width: 2 x 3 patches of 4 px


def vit_cfg():
    return build(ModelConfig, {"arch": "vit", "patch_size": 4, "n_layer": 2, "n_head": 2, "d_model": 16, "d_ff": 32,
                               "mlp": "gelu"})


def make(mask_ratio=0.5):
    torch.manual_seed(0)
    cfg = vit_cfg()
    return MaskedAutoencoder(VisionTransformer(cfg, SHAPE, 3), cfg, SHAPE, mask_ratio, 16, 1, 2)


def test_patchify_is_the_vit_patch_order():
    x = torch.randn(3, *SHAPE)
    assert torch.equal(unpatchify(patchify(x, 4), 4, SHAPE), x)
    vit = VisionTransformer(vit_cfg(), SHAPE, 3)
    w = vit.patches.proj.weight.permute(0, 2, 3, 1).reshape(16, -1)  # (D, P·P·C) in patchify's order
    torch.testing.assert_close(vit.patches(x), patchify(x, 4) @ w.T + vit.patches.proj.bias)


def test_encoder_sees_only_visible_patches():
    mae = make(0.5)
    seen = []
    mae.vit.blocks[0].register_forward_hook(lambda mod, args, out: seen.append(args[0].shape))
    x = torch.randn(4, *SHAPE)
    keep, hidden = mae._mask(x, torch.Generator().manual_seed(1))
    assert keep.shape == (4, 3) and hidden.shape == (4, 3)
    pred = mae._decode(x, keep)
    assert seen == [torch.Size([4, 1 + 3, 16])]  # [CLS] + 3 of the 6 patches
    # changing the pixels of hidden patches changes nothing the decoder predicts: the encoder never saw them
    p = patchify(x, 4)
    noisy = p.scatter(1, hidden[..., None].expand(-1, -1, p.shape[-1]), torch.randn_like(p))
    torch.testing.assert_close(mae._decode(unpatchify(noisy, 4, SHAPE), keep), pred)


def test_loss_is_normalized_pixel_error_on_hidden_patches_only():
    mae = make(0.5)
    x = torch.randn(4, *SHAPE)
    loss = mae(x, torch.Generator().manual_seed(5))
    keep, hidden = mae._mask(x, torch.Generator().manual_seed(5))
    target = patchify(x, 4)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    err = (mae._decode(x, keep) - target).pow(2).mean(-1)
    want = torch.stack([err[b, hidden[b]].mean() for b in range(4)]).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()  # the encoder learns from it
    assert mae.vit.patches.proj.weight.grad.abs().sum() > 0 and mae.vit.head.weight.grad is None


def test_reconstruct_keeps_visible_patches_exactly():
    mae = make(0.5)
    x = torch.randn(2, *SHAPE)
    shown, filled = mae.reconstruct(x, torch.Generator().manual_seed(2))
    keep, hidden = mae._mask(x, torch.Generator().manual_seed(2))
    p, ps, pf = patchify(x, 4), patchify(shown, 4), patchify(filled, 4)
    for b in range(2):
        assert torch.equal(ps[b, keep[b]], p[b, keep[b]]) and torch.equal(pf[b, keep[b]], p[b, keep[b]])
        assert ps[b, hidden[b]].abs().sum() == 0 and not torch.equal(pf[b, hidden[b]], p[b, hidden[b]])


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_mask_ratio_must_leave_something_to_see_and_to_guess(ratio):
    with pytest.raises(ModelError, match="mask_ratio"):
        make(ratio)
