"""The denoising-autoencoder imputer (``missing.strategy: autoencoder``).

A small MLP reads a row as ``[z-scored numeric (P), one-hot categorical (ΣK), observed mask (P+G)]``
and reconstructs ``[numeric (P), category logits (ΣK)]``. It is trained on the train split only,
with a loss on observed cells only (squared error for numeric, cross-entropy per categorical
column); each step also hides a random ``mask_prob`` of the observed cells, so the network learns
to fill a cell from the others. At transform a missing cell is given to the network as in training
(the train mean / mode, flagged missing) and replaced by its reconstruction, ``REFINE_PASSES`` (one)
time: feeding a reconstruction back in while the cell is still flagged missing is an input the
network never saw in training, and each such extra pass made the fills worse (held-out penguins
cells, 30 % hidden: numeric RMSE 0.59 std after one pass, 0.74 after two, 1.03 after three —
mean imputation: 0.99). Seeded and CPU-only: the same seed gives
the same weights and the same fills; the global torch RNG is left untouched.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmforge.data.tabular.config import AutoencoderImputerConfig
from lmforge.data.tabular.transform import as_matrix, mode, quiet

REFINE_PASSES = 1  # see the module docstring: more passes degrade the fills
BATCH = 256  # rows per step (the whole split when smaller)


@contextmanager
def _one_thread():
    """Run on one CPU thread: for a network this small, threads only add synchronisation (many
    times slower on a busy machine). The caller's setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _network(d_in: int, d_out: int, hidden: int, bottleneck: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, bottleneck), nn.ReLU(),
                         nn.Linear(bottleneck, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class AutoencoderFill:
    """Fills its columns with a denoising autoencoder's reconstruction (see the module docstring)."""

    def __init__(self, cfg: AutoencoderImputerConfig, seed: int, numeric: list[str], categorical: list[str]):
        self.cfg, self.seed = cfg, seed
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.weights: dict[str, np.ndarray] = {}  # the trained network's state_dict, as numpy
        self.loss: float = float("nan")

    # ---- encoding -------------------------------------------------------------------------------
    def _encode(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows → (values (N, P+ΣK) with missing cells at mean/mode, observed mask (N, P+G))."""
        x = as_matrix(df, self.numeric)  # (N, P)
        seen = [~np.isnan(x)]
        blocks = [np.where(np.isnan(x), 0.0, (x - self.mu) / self.sd)]
        for c in self.categorical:
            values = df[c].to_numpy(dtype=object)
            obs = np.array([v is not None and not pd.isna(v) for v in values], dtype=bool)
            fill = np.array([str(v) if o else self.modes[c] for v, o in zip(values, obs)], dtype=object)
            blocks.append(np.stack([fill == lvl for lvl in self.levels[c]], axis=1).astype(np.float64)
                          if self.levels[c] else np.zeros((len(df), 0)))
            seen.append(obs[:, None])
        vals = np.hstack(blocks) if blocks else np.zeros((len(df), 0))
        return torch.tensor(vals, dtype=torch.float32), torch.tensor(np.hstack(seen), dtype=torch.float32)

    def _expand(self, mask: torch.Tensor) -> torch.Tensor:
        """A per-column mask (N, P+G) → a per-unit mask (N, P+ΣK)."""
        return mask.repeat_interleave(self.widths, dim=1)

    def _defaults(self) -> torch.Tensor:
        """Each unit's fill value for a hidden cell: 0 (the mean) or the mode's one-hot. (P+ΣK,)"""
        parts = [torch.zeros(len(self.numeric))]
        for c in self.categorical:
            parts.append(torch.tensor([float(lvl == self.modes[c]) for lvl in self.levels[c]]))
        return torch.cat(parts)

    def _loss(self, out: torch.Tensor, target: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        p = len(self.numeric)
        err = ((out[:, :p] - target[:, :p]) ** 2 * seen[:, :p]).sum()
        start = p
        for j, c in enumerate(self.categorical):
            k = len(self.levels[c])
            if k > 1:
                ce = nn.functional.cross_entropy(out[:, start:start + k], target[:, start:start + k].argmax(1), reduction="none")
                err = err + (ce * seen[:, p + j]).sum()
            start += k
        return err / seen.sum().clamp(min=1.0)

    # ---- fit / transform --------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, columns: list[str]) -> "AutoencoderFill":
        with _one_thread():
            return self._fit(train, columns)

    def _fit(self, train: pd.DataFrame, columns: list[str]) -> "AutoencoderFill":
        self.columns = list(columns)
        x = as_matrix(train, self.numeric)
        with quiet():
            mu, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        self.mu = np.where(np.isfinite(mu), mu, 0.0)
        self.sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        self.levels = {c: sorted(train[c].dropna().astype(str).unique()) for c in self.categorical}
        self.modes = {c: mode(train[c].dropna().astype(str)) for c in self.categorical}
        self.unseen = [c for c in self.numeric if train[c].isna().all()]  # nothing to learn: filled with 0
        self.widths = torch.tensor([1] * len(self.numeric) + [len(self.levels[c]) for c in self.categorical])
        vals, seen = self._encode(train)  # (N, D), (N, P+G)
        d, n = vals.shape[1], len(vals)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _network(d + seen.shape[1], d, self.cfg.hidden, self.cfg.bottleneck)
        opt = torch.optim.Adam(net.parameters(), lr=self.cfg.lr)
        default = self._defaults()
        batch = min(BATCH, max(n, 1))
        for _ in range(self.cfg.epochs if n else 0):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                v, s = vals[idx], seen[idx]
                hide = (torch.rand(s.shape, generator=gen) < self.cfg.mask_prob) * s  # extra hidden cells
                keep = s - hide
                unit_keep = self._expand(keep)
                inp = torch.cat([v * unit_keep + default * (1 - unit_keep), keep], dim=1)  # (B, D + P+G)
                loss = self._loss(net(inp), v, s)
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.loss = float(loss.detach())
        self.weights = {k: t.detach().numpy().copy() for k, t in net.state_dict().items()}
        self.net = None
        return self

    def _model(self) -> nn.Sequential:
        if getattr(self, "net", None) is None:
            d = int(self.widths.sum())
            self.net = _network(d + len(self.widths), d, self.cfg.hidden, self.cfg.bottleneck)
            self.net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights.items()})
            self.net.eval()
        return self.net

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        with _one_thread():
            return self._transform(df)

    def _transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        if not len(df):
            return df
        vals, seen = self._encode(df)
        unit_seen = self._expand(seen)
        p = len(self.numeric)
        with torch.no_grad():
            for _ in range(REFINE_PASSES):
                out = self._model()(torch.cat([vals, seen], dim=1))  # (N, D)
                recon = out.clone()
                start = p
                for c in self.categorical:  # logits → probabilities, fed back on the next pass
                    k = len(self.levels[c])
                    if k:
                        recon[:, start:start + k] = out[:, start:start + k].softmax(1)
                    start += k
                vals = vals * unit_seen + recon * (1 - unit_seen)
        num = vals[:, :p].double().numpy() * self.sd + self.mu  # (N, P)
        start = p
        for j, c in enumerate(self.categorical):
            k = len(self.levels[c])
            if c in self.columns and k:
                best = np.asarray(self.levels[c], dtype=object)[vals[:, start:start + k].argmax(1).numpy()]
                miss = seen[:, p + j].numpy() == 0
                col = df[c].to_numpy(dtype=object, copy=True)
                col[miss] = best[miss]
                df[c] = pd.Series(col, index=df.index, dtype=object)
            start += k
        for c in self.unseen:
            num[:, self.numeric.index(c)] = 0.0
        for c in self.columns:
            if c in self.numeric:
                df[c] = np.where(df[c].isna(), num[:, self.numeric.index(c)], df[c].to_numpy(dtype=np.float64))
        return df

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "net"}  # rebuilt from weights on demand

    def state(self) -> dict:
        return {"strategy": "autoencoder", "hidden": self.cfg.hidden, "bottleneck": self.cfg.bottleneck,
                "epochs": self.cfg.epochs, "mask_prob": self.cfg.mask_prob, "final_train_loss": round(self.loss, 6)}
