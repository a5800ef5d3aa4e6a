"""``first_layer: average``: block 0 starts as a near-uniform average over the unpadded positions, so
the first token's final state carries the whole text from step 0, and every weight still trains."""

import torch

from lmforge.models.config import ModelConfig, resolve
from lmforge.models.transformer import build_encoder_mlm
from lmforge.training.average_init import average_first_layer


def _model(seed: int = 0):
    torch.manual_seed(seed)
    cfg = resolve(ModelConfig(preset="bert-tiny", vocab_size=200, max_seq_len=32, dropout=0.0),
                  {"vocab_size", "max_seq_len", "dropout"})  # post-norm BERT layout, std 0.02 init
    return build_encoder_mlm(cfg).eval()


def test_block0_adds_the_masked_mean_of_the_text():
    model = _model()
    info = average_first_layer(model.body, scale=4.0)
    assert info == {"kind": "average", "scale": 4.0, "qk_scale": 0.05}
    ids = torch.tensor([[2, 17, 33, 45, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        x = model.body.embed(ids, torch.arange(7), None)
        y = model.body.blocks[0].attn(x, False, mask[:, None, None, :].bool())
    mean = x[0, :5].mean(0)  # padding excluded
    for pos in range(5):
        torch.testing.assert_close(y[0, pos], 4.0 * mean, rtol=2e-3, atol=2e-3)


def test_first_token_sees_the_text_and_everything_trains():
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 3]])
    other = torch.tensor([[2, 90, 91, 92, 93, 94, 3]])  # same frame, different words

    def change(model):
        with torch.no_grad():
            a, b = model.body(ids)[0, 0], model.body(other)[0, 0]
        return float((a - b).norm() / a.norm())

    random_body = change(_model())
    averaged = _model()
    average_first_layer(averaged.body)
    assert change(averaged) > 5 * random_body  # at BERT's init scale the first token barely sees the words

    averaged.train()
    averaged.body(ids)[:, 0].pow(2).sum().backward()
    qkv = averaged.body.blocks[0].attn.qkv_proj.weight.grad
    c = averaged.body.blocks[0].attn.o_proj.weight.shape[0]
    assert qkv[:c].abs().sum() > 0 and qkv[c:2 * c].abs().sum() > 0  # queries and keys are not stuck at a saddle
