"""Schema of ``data.image``: image sources, dedup, normalization and train-time augmentation.

Used when ``data.kind: image``. The split (``data.split.val/test``, stratified by label) and the
declared label set (``data.labels``) are the text pipeline's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class ImageSourceConfig:
    """One input: IDX files (MNIST format), a folder with one subfolder per class, .npy/.npz
    arrays, or a bundled set."""

    path: Optional[str] = field(default=None, metadata={"help": "IDX image file (.gz or raw), class-per-subfolder folder of PNG/JPEG, or .npz (arrays 'images' and 'labels') / .npy images"})
    labels: Optional[str] = field(default=None, metadata={"help": "IDX label file (format: idx) or .npy labels (format: npy)"})
    builtin: Optional[Literal["digits"]] = field(default=None, metadata={"help": "scikit-learn's bundled 8x8 digits (1,797 images, no download)"})
    format: Literal["auto", "idx", "folder", "npz", "npy"] = field(default="auto", metadata={"help": "auto: by extension (.gz/-ubyte = idx, folder, .npz, .npy)"})
    label_names: Optional[list[str]] = field(default=None, metadata={"help": "names of the integer labels 0..K-1 of IDX/npy/npz sources (default: the integers as text)"})
    split: Optional[Literal["train", "val", "test"]] = field(default=None, metadata={"help": "put every image of this source in this split (e.g. a dataset's official test set); default: the seeded stratified split decides"})

    def validate(self):
        if (self.path is None) == (self.builtin is None):
            yield "path", "set exactly one of 'path' or 'builtin'"
        if self.format in ("idx", "npy") and self.path is not None and self.labels is None:
            yield "labels", f"format: {self.format} needs a labels file (the IDX labels / a .npy of integers)"


@dataclass
class ImageDedupConfig:
    """Duplicate images, removed before the split (and checked across splits)."""

    exact: bool = field(default=True, metadata={"help": "identical pixels (content hash)"})
    perceptual: bool = field(default=False, metadata={"help": "near duplicates by a 64-bit difference hash (dHash)"})
    max_hamming: int = field(default=2, metadata={"min": 0, "max": 32, "help": "dHash bits that may differ for two images to count as near duplicates"})
    max_pixel_diff: Optional[float] = field(default=0.02, metadata={"min": 0.0, "max": 1.0, "help": "and their mean absolute pixel difference (pixels in [0, 1]) is at most this; null: the dHash alone decides (coarse on small images: on Fashion-MNIST most pairs within 2 bits are different garments)"})


@dataclass
class ImageAugmentConfig:
    """Train-time augmentation, on the fly in the loader, seeded per (seed, epoch, step).
    Zero / null switches a transform off."""

    enabled: bool = False
    rotation: float = field(default=0.0, metadata={"min": 0.0, "max": 180.0, "help": "max rotation in degrees (uniform in ±rotation)"})
    translate: float = field(default=0.0, metadata={"min": 0.0, "max": 0.5, "help": "max shift as a fraction of width/height"})
    scale: Optional[list[float]] = field(default=None, metadata={"help": "[min, max] zoom factor, e.g. [0.9, 1.1]"})
    hflip: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0, "help": "probability of a horizontal flip"})
    vflip: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0, "help": "probability of a vertical flip"})
    resized_crop: Optional[list[float]] = field(default=None, metadata={"help": "random resized crop: [min, max] area fraction, e.g. [0.8, 1.0]"})
    brightness: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0, "help": "colour jitter: brightness factor in 1 ± brightness"})
    contrast: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0, "help": "colour jitter: contrast factor in 1 ± contrast"})
    noise: float = field(default=0.0, metadata={"min": 0.0, "help": "std of Gaussian noise added to pixels in [0, 1]"})
    cutout: int = field(default=0, metadata={"min": 0, "help": "side of a square zeroed at a random place (pixels); 0 = off"})

    def validate(self):
        for key in ("scale", "resized_crop"):
            v = getattr(self, key)
            if v is not None and (len(v) != 2 or not 0 < v[0] <= v[1]):
                yield key, f"expected [min, max] with 0 < min <= max; got {v}"


@dataclass
class ImageConfig:
    """``data.image``: what to read and how images are cleaned, normalized and augmented."""

    sources: list[ImageSourceConfig] = field(default_factory=list, metadata={"help": "inputs; all are read into one set"})
    size: Optional[list[int]] = field(default=None, metadata={"help": "[height, width] every image is resized to (folders of mixed sizes); default: all images must have the first image's shape"})
    channels: Optional[int] = field(default=None, metadata={"min": 1, "max": 4, "help": "1 = grayscale, 3 = RGB (default: the first image's)"})
    normalize: Literal["mean_std", "minmax01", "minmax11"] = field(default="mean_std", metadata={"help": "mean_std: per-channel mean/std of the train split; minmax01: pixels/255; minmax11: to [-1, 1]"})
    dedup: ImageDedupConfig = field(default_factory=ImageDedupConfig)
    augment: ImageAugmentConfig = field(default_factory=ImageAugmentConfig)
    max_images: Optional[int] = field(default=None, metadata={"min": 1, "help": "read at most this many images per source (quick trials)"})

    def validate(self):
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            yield "size", f"expected [height, width] of positive integers; got {self.size}"
