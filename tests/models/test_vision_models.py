"""Image classifiers (SmallCNN, ViT) and their save/load folder."""

import pytest
import torch

from lmforge.errors import LmforgeError, ModelError
from lmforge.models.arrays import is_array_model, load_array_model, save_array_model
from lmforge.models.config import ModelConfig
from lmforge.models.layers import Block
from lmforge.models.vision import SmallCNN, VisionTransformer, build_image_model

CNN = ModelConfig(arch="cnn", conv_channels=[8, 16], hidden=[32], dropout=0.1)
VIT = ModelConfig(arch="vit", patch_size=4, d_model=32, n_layer=2, n_head=4, dropout=0.1)
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def _model(cfg, shape, k=10):
    torch.manual_seed(0)
    return build_image_model(cfg, shape, k)


@pytest.mark.parametrize("cfg", [CNN, VIT], ids=["cnn", "vit"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_shape(cfg, shape):
    model = _model(cfg, shape, k=7)
    assert model(torch.randn(3, *shape)).shape == (3, 7)


def test_builder_picks_class_and_cnn_depth_on_tiny_images():
    assert isinstance(_model(CNN, (1, 8, 8)), SmallCNN)
    assert isinstance(_model(VIT, (1, 8, 8)), VisionTransformer)
    deep = ModelConfig(arch="cnn", conv_channels=[4, 4, 4, 4], hidden=[8])  # 8→4→2, then no more pooling
    assert _model(deep, (1, 8, 8))(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_vit_uses_our_blocks_non_causally():
    model = _model(VIT, (1, 28, 28)).eval()
    assert len(model.blocks) == 2 and all(isinstance(b, Block) for b in model.blocks)
    x = torch.randn(1, 1, 28, 28)
    x2 = x.clone()
    x2[..., -4:, -4:] += 1.0  # only the last patch changes
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x2))  # the [CLS] (first) position sees the last patch


def test_patch_size_must_divide_image():
    with pytest.raises(ModelError, match=r"patch_size=5.*28x28"):
        build_image_model(ModelConfig(arch="vit", patch_size=5, d_model=32, n_head=4), (1, 28, 28), 10)


def test_unknown_arch():
    with pytest.raises(ModelError, match="cnn, vit"):
        build_image_model(ModelConfig(arch="mlp"), (1, 8, 8), 10)


@pytest.mark.parametrize("cfg", [CNN, VIT], ids=["cnn", "vit"])
def test_gradient_reaches_every_parameter(cfg):
    model = _model(cfg, (3, 32, 32))
    model(torch.randn(4, 3, 32, 32)).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cfg", [CNN, VIT], ids=["cnn", "vit"])
def test_eval_is_deterministic(cfg):
    model = _model(cfg, (1, 28, 28)).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("cfg", [CNN, VIT], ids=["cnn", "vit"])
def test_save_load_roundtrip(tmp_path, cfg):
    model = _model(cfg, (1, 28, 28))
    with torch.no_grad():  # move the BatchNorm running statistics away from their initial values
        for _ in range(3):
            model(torch.randn(8, 1, 28, 28) * 2 + 1)
    model.eval()
    meta = {"kind": "image", "in_shape": (1, 28, 28), "num_outputs": 10, "labels": [str(i) for i in range(10)],
            "normalize": {"mean": [0.13], "std": [0.31]}}
    folder = save_array_model(model, tmp_path / "best", cfg, meta)
    save_array_model(model, tmp_path / "best", cfg, meta)  # replacing an existing folder works
    assert is_array_model(folder) and sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    loaded, config = load_array_model(folder)
    assert not loaded.training and config["labels"][3] == "3" and config["in_shape"] == [1, 28, 28]
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_tampered_or_foreign_folders_are_refused(tmp_path):
    model = _model(CNN, (1, 8, 8))
    folder = save_array_model(model, tmp_path / "m", CNN, {"kind": "image", "in_shape": [1, 8, 8], "num_outputs": 10})
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(LmforgeError, match="checksum"):
        load_array_model(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LmforgeError, match="config.json"):
        load_array_model(empty)
    (empty / "config.json").write_text('{"architectures": ["BertModel"]}')
    assert not is_array_model(empty)
    with pytest.raises(LmforgeError, match="lmforge_kind"):
        load_array_model(empty)
