"""The embedding-health figure: ~0 for independent rows, near 1 for rows on one direction."""

import numpy as np
import torch

from lmforge.training.embedding_health import band_cosines, band_name


def test_band_cosines_tell_collapsed_rows_from_independent_ones():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5000, 64, generator=g)
    shared = torch.randn(64, generator=g)
    w[4000:] = 0.2 * w[4000:] + 3 * shared  # the rarest band drifts onto one direction
    ranks = np.arange(5000)
    cos = band_cosines(w, ranks)
    assert abs(cos[band_name(0, 1000)]) < 0.02 and abs(cos[band_name(1000, 4000)]) < 0.02
    assert cos[band_name(4000, None)] > 0.9
    # the closed form equals the mean over pairs
    u = torch.nn.functional.normalize(w[:50], dim=-1)
    sims = u @ u.T
    brute = (sims.sum() - sims.diag().sum()) / (50 * 49)
    assert abs(band_cosines(w[:50], np.arange(50))[band_name(0, 1000)] - float(brute)) < 1e-5


def test_output_cosine_is_one_for_a_body_that_ignores_its_input():
    from lmforge.training.embedding_health import output_cosine

    class Constant(torch.nn.Module):
        def forward(self, ids):
            return torch.ones(*ids.shape, 8)

    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(100, 8)

        def forward(self, ids):
            return self.emb(ids)

    ids = torch.randint(0, 100, (4, 16))
    assert abs(output_cosine(Constant(), ids) - 1.0) < 1e-6
    assert output_cosine(Echo(), ids) < 0.3
