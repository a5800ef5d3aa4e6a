"""A first attention layer that starts as an average over the text.

With co-occurrence token embeddings (``embedding_init: cooccurrence``) the useful signal of a text
is the bag of its token vectors: a logistic-regression probe on their mean scores 0.727 on SST-2 at
1,000 labels. A randomly initialized encoder hides it from the classifier: at BERT's init scale
(std 0.02) each attention layer adds about a tenth of the other positions to a position, so the
``<cls>`` state the pooler reads is almost the ``<cls>`` embedding alone, and 150 fine-tuning steps
on 1,000 labels do not recover the bag (RESULTS.md, 2026-12-08).

``first_layer: average`` starts block 0 so that every position receives the average of the text:

- queries and keys scaled down (×``qk_scale``, not zeroed: a zero query gets no gradient while its
  key is zero, and vice versa), so attention is near-uniform over the unpadded positions;
- values = identity and output projection = ``scale`` × identity, biases zero, so block 0 adds
  ``scale`` × the mean of the (normalized) embeddings to each position before its LayerNorm.

Everything else keeps its random init and every weight trains as usual: this is a starting point,
not a constraint. It is pointless on a random token table (measured: no gain), so it comes with a
pretrained table.
"""

from __future__ import annotations

import torch


def average_first_layer(body: torch.nn.Module, scale: float = 4.0, qk_scale: float = 0.05) -> dict:
    """Rewrite block 0's attention of a :class:`~lmforge.models.transformer.TransformerBody` in place
    (see the module docstring); returns what was done, for the pretraining summary."""
    attn = body.blocks[0].attn
    c = attn.o_proj.weight.shape[0]
    eye = torch.eye(c, dtype=attn.o_proj.weight.dtype)
    with torch.no_grad():
        w = attn.qkv_proj.weight  # rows: q (c), k (c), v (c)
        w[: 2 * c].mul_(qk_scale)
        w[2 * c:].copy_(eye)
        attn.o_proj.weight.copy_(scale * eye)
        for lin in (attn.qkv_proj, attn.o_proj):
            if lin.bias is not None:
                lin.bias.zero_()
    return {"kind": "average", "scale": scale, "qk_scale": qk_scale}
