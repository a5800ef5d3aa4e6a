"""Table models (linear, MLP, FT-Transformer) and their save/load folder."""

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import ModelError
from lmforge.models.arrays import load_array_model, save_array_model
from lmforge.models.config import ModelConfig
from lmforge.models.layers import Block
from lmforge.models.tabular import LinearModel, MLPModel, TabTransformer, build_tabular_model

CFGS = {"linear": ModelConfig(arch="linear"),
        "mlp": ModelConfig(arch="mlp", hidden=[32, 16], dropout=0.1),
        "tab_transformer": ModelConfig(arch="tab_transformer", d_model=16, n_layer=2, n_head=2, dropout=0.1)}
N_NUM, CARDS = 3, [4, 3]  # two categorical columns: 3 and 2 categories, plus the unknown code 0
N_FEATURES = N_NUM + sum(c - 1 for c in CARDS)  # numeric + one-hot columns


def _table(n=200, seed=0):
    """A separable problem: the class is the sign of a linear score of numbers and categories."""
    g = torch.Generator().manual_seed(seed)
    num = torch.randn(n, N_NUM, generator=g)
    cat = torch.stack([torch.randint(1, c, (n,), generator=g) for c in CARDS], dim=1)  # (n, G), no unknowns
    onehot = torch.cat([F.one_hot(cat[:, j] - 1, c - 1).float() for j, c in enumerate(CARDS)], dim=1)
    x = torch.cat([num, onehot], dim=1)  # (n, F)
    score = num[:, 0] - 0.5 * num[:, 1] + (cat[:, 0] == 1).float() * 1.5 - 0.5
    return x, cat, (score > 0).long()


def _model(arch, k=2):
    torch.manual_seed(0)
    return build_tabular_model(CFGS[arch], N_FEATURES, N_NUM, CARDS, k)


@pytest.mark.parametrize("arch", CFGS)
@pytest.mark.parametrize("k", [1, 3])
def test_output_shape_and_class(arch, k):
    model = _model(arch, k)
    assert isinstance(model, {"linear": LinearModel, "mlp": MLPModel, "tab_transformer": TabTransformer}[arch])
    x, cat, _ = _table(5)
    assert model(x, cat).shape == (5, k)


def test_tab_transformer_uses_our_blocks_and_cat_codes():
    model = _model("tab_transformer").eval()
    assert all(isinstance(b, Block) for b in model.blocks)
    x, cat, _ = _table(4)
    other = cat.clone()
    other[:, 1] = 0  # the second column becomes unknown; x (with its one-hot part) is unchanged
    with torch.no_grad():
        assert not torch.allclose(model(x, cat), model(x, other))
        x2 = x.clone()
        x2[:, N_NUM:] = 0  # the one-hot columns are not read
        assert torch.equal(model(x, cat), model(x2, cat))
    with pytest.raises(ModelError, match="categorical columns"):
        model(x, None)


@pytest.mark.parametrize("arch", CFGS)
def test_fits_separable_problem(arch):
    model = _model(arch)
    x, cat, y = _table()
    opt = torch.optim.Adam(model.parameters(), lr=0.03 if arch != "tab_transformer" else 0.01)
    for _ in range(50):
        loss = F.cross_entropy(model(x, cat), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x, cat).argmax(-1) == y).float().mean().item()
    assert acc >= 0.9, acc


@pytest.mark.parametrize("arch", CFGS)
def test_gradient_reaches_every_parameter_and_penalized_weights(arch):
    model = _model(arch)
    x, cat, _ = _table(16)
    model(x, cat).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    penalized = model.penalized_weights()
    names = {id(p): n for n, p in model.named_parameters()}
    assert penalized and all(names[id(w)].endswith("weight") and w.dim() == 2 for w in penalized)
    assert not any("norm" in names[id(w)] or "bias" in names[id(w)] for w in penalized)


@pytest.mark.parametrize("arch", ["mlp", "tab_transformer"])
def test_save_load_roundtrip(tmp_path, arch):
    model = _model(arch, k=3)
    x, cat, _ = _table(32)
    with torch.no_grad():  # move the BatchNorm running statistics
        for _ in range(3):
            model(x * 2 + 1, cat)
    model.eval()
    meta = {"kind": "tabular", "n_features": N_FEATURES, "n_numeric": N_NUM, "cat_cardinalities": CARDS,
            "num_outputs": 3, "labels": ["a", "b", "c"], "task": "classification"}
    loaded, config = load_array_model(save_array_model(model, tmp_path / "m", CFGS[arch], meta))
    assert config["lmforge_kind"] == "tabular" and config["model"]["arch"] == arch
    with torch.no_grad():
        assert torch.equal(model(x, cat), loaded(x, cat))


def test_builder_errors():
    with pytest.raises(ModelError, match="linear, mlp, tab_transformer"):
        build_tabular_model(ModelConfig(arch="cnn"), 4, 4, [], 2)
    with pytest.raises(ModelError, match="n_numeric=5"):
        build_tabular_model(CFGS["mlp"], 4, 5, [], 2)
