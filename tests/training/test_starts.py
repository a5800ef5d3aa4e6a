

def test_set_dropout_reaches_the_attention_probabilities():
    """finetune.dropout: 0 must switch off every dropout, including SDPA's on the attention
    probabilities (a float on the attention module, not an nn.Dropout)."""
    import torch

    from lmforge.models.config import ModelConfig
    from lmforge.models.transformer import TransformerBody
    from lmforge.training.starts import set_dropout

    torch.manual_seed(0)
    body = TransformerBody(ModelConfig(arch="encoder", vocab_size=50, n_layer=2, n_head=2, d_model=16, max_seq_len=16,
                                       dropout=0.5), causal=False).train()
    ids = torch.randint(0, 50, (2, 10))
    assert not torch.equal(body(ids), body(ids))  # dropout on: two passes differ
    set_dropout(body, 0.0)
    assert all(b.attn.attn_dropout == 0.0 for b in body.blocks)
    assert torch.equal(body(ids), body(ids))  # every dropout off, attention included
