"""A grid of images with a caption under each, saved as PNG (samples and augmentation previews)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from lmforge.errors import writing


def save_image_grid(images: np.ndarray, titles: list[str], path: Path, ncols: int = 8,
                    title: Optional[str] = None) -> Path:
    """Draw uint8 (N, C, H, W) images (gray for C=1, RGB for C=3, RGBA shown as RGB; C=2 shows its
    first channel) in rows of ``ncols``, each captioned with its title. The cells are pasted into
    one canvas drawn once (a subplot per image costs ~15 ms each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    h, w = images.shape[2:] if n else (1, 1)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    gap_y, gap_x = max(2, round(0.3 * h)), max(1, round(0.08 * w))  # room for the caption above each cell
    color = n and images.shape[1] >= 3
    canvas = np.full((nrows * (h + gap_y), ncols * (w + gap_x)) + ((3,) if color else ()), 255, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, ncols)
        img = np.asarray(images[k])
        cell = img[:3].transpose(1, 2, 0) if color else img[0]
        y0, x0 = r * (h + gap_y) + gap_y, c * (w + gap_x)
        canvas[y0:y0 + h, x0:x0 + w] = cell
    cw = 1.3
    fig_w, fig_h = cw * ncols, cw * ncols * canvas.shape[0] / canvas.shape[1] + (0.4 if title else 0.05)
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0, 0, 1, 1 - (0.4 if title else 0.05) / fig_h))
    ax.imshow(canvas, cmap=None if color else "gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    ax.axis("off")
    for k in range(min(n, len(titles))):
        r, c = divmod(k, ncols)
        ax.text(c * (w + gap_x) + w / 2, r * (h + gap_y) + gap_y * 0.55, str(titles[k])[:18], ha="center",
                va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.15 / fig_h)
    path = Path(path)
    with writing(path):
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_previews(out: Path, train: np.ndarray, labels: np.ndarray, label_names: list[str],
                   augment, seed: int, n_samples: int = 32, n_augmented: int = 8, variants: int = 5) -> list[str]:
    """``samples.png`` (train images with their labels) and, with augmentation on, ``augment_grid.png``
    (each row: an original, then ``variants`` augmented copies); both seeded. Returns the file names."""
    import torch

    from lmforge.data.images.augment import Augmenter

    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(train))[:n_samples]  # random order: the train split is often grouped by class
    save_image_grid(train[pick], [label_names[i] for i in labels[pick]], out / "samples.png",
                    title=f"{len(pick)} train images")
    written = ["samples.png"]
    if augment.enabled:
        pick = pick[:n_augmented]
        x = torch.from_numpy(np.array(train[pick], dtype=np.float32) / 255)  # (n, C, H, W) in [0, 1]
        gen = torch.Generator().manual_seed(seed)
        aug = Augmenter(augment)
        views = torch.stack([x] + [aug(x, gen) for _ in range(variants)], dim=1)  # (n, 1 + variants, C, H, W)
        grid = (views.flatten(0, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        titles = [label_names[labels[i]] if v == 0 else f"aug {v}" for i in pick for v in range(variants + 1)]
        save_image_grid(grid, titles, out / "augment_grid.png", ncols=variants + 1,
                        title="augmentation: original, then augmented copies")
        written.append("augment_grid.png")
    return written
