"""Reading image sources into uint8 arrays: IDX (MNIST), class folders, .npz/.npy, built-in digits.

Every source yields :class:`ImageBatch` chunks (``images`` uint8 (N, C, H, W)) and a
:class:`Rejected` for each record it cannot use, with a counted reason (``truncated_idx``,
``no_label``, ``no_image``, ``unreadable_image``, ``wrong_shape``, ``not_an_image``,
``unknown_label``). A file that is not what it claims (wrong IDX magic, an unreadable .npz)
is a :class:`~lmforge.errors.DataError` naming the file. :func:`read_source` gives the same
stream one :class:`ImageRecord` at a time.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from lmforge.data.images.config import ImageConfig, ImageSourceConfig
from lmforge.data.images.convert import label_texts, resize, to_channels, to_nchw, to_uint8
from lmforge.errors import DataError

IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801  # ubyte data, 3 dims (N, H, W) / 1 dim (N,)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
CHUNK = 4096  # images per batch a folder source yields


@dataclass
class ImageRecord:
    id: str
    pixels: np.ndarray  # uint8 (C, H, W)
    label: Optional[str]
    source: str


@dataclass
class Rejected:
    source: str
    id: str
    reason: str
    detail: str


@dataclass
class ImageBatch:
    """Consecutive records of one source."""

    images: np.ndarray  # uint8 (N, C, H, W)
    labels: list[Optional[str]]
    ids: list[str]
    source: str


Item = Union[ImageBatch, Rejected]


def source_name(src: ImageSourceConfig) -> str:
    return f"builtin:{src.builtin}" if src.builtin else str(src.path)


def detect_format(src: ImageSourceConfig) -> str:
    """``src.format``, or the format ``auto`` means for this path."""
    if src.builtin:
        return "builtin"
    if src.format != "auto":
        return src.format
    p = Path(src.path)
    if p.is_dir():
        return "folder"
    name = p.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".gz", ".idx")) or "-ubyte" in name or "idx3" in name:
        return "idx"
    raise DataError(f"{p}: cannot tell the image format from the name; set format: idx, folder, npz or npy")


def from_arrays(images: np.ndarray, labels: Optional[np.ndarray], src: ImageSourceConfig, cfg: ImageConfig,
                path: str, warnings: Optional[list[str]] = None) -> Iterator[Item]:
    """Records from an image array and a label array; extra images are ``no_label``, extra labels ``no_image``."""
    name = source_name(src)
    cap = cfg.max_images or len(images)
    images = images[:cap]
    x = resize(to_channels(to_uint8(to_nchw(images, path), path, warnings), cfg.channels, path), cfg.size)
    ids = [f"{path}:{i}" for i in range(len(x))]
    if labels is None:
        yield ImageBatch(x, [None] * len(x), ids, name)
        return
    labels = labels[:cap]
    texts = label_texts(np.asarray(labels[:len(x)]), src.label_names, path)
    texts += [None] * (len(x) - len(texts))
    for i in range(len(x), len(labels)):
        yield Rejected(name, f"{path}:{i}", "no_image", f"label {i} has no image: {len(x):,} images, {len(labels):,} labels")
    for i, t in enumerate(texts):
        if t is None and i >= len(labels):
            yield Rejected(name, ids[i], "no_label", f"image {i} has no label: {len(x):,} images, {len(labels):,} labels")
        elif t is None:
            yield Rejected(name, ids[i], "unknown_label", f"label {int(np.asarray(labels)[i])} has no name in "
                                                         f"label_names ({len(src.label_names or [])} names)")
    keep = np.array([t is not None for t in texts], dtype=bool)
    if keep.all():
        yield ImageBatch(x, texts, ids, name)
    elif keep.any():
        yield ImageBatch(x[keep], [t for t in texts if t is not None], [d for d, k in zip(ids, keep) if k], name)


# -- IDX -----------------------------------------------------------------------------------------

def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's bytes, gunzipped when it is gzip (by its magic bytes), and whether the gzip stream
    was complete; a truncated or damaged stream gives what decompressed before the damage."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw, True
    d, parts = zlib.decompressobj(wbits=31), []
    try:
        for i in range(0, len(raw), 1 << 20):
            parts.append(d.decompress(raw[i:i + (1 << 20)]))
    except zlib.error:
        return b"".join(parts), False
    return b"".join(parts), d.eof


def _idx_header(buf: bytes, path: Path, magic: int) -> tuple[tuple[int, ...], int]:
    """The dims and the payload offset of an IDX file whose magic must be ``magic``."""
    what = {IDX_IMAGES: "image", IDX_LABELS: "label"}[magic]
    if len(buf) < 4:
        raise DataError(f"{path}: {len(buf)} byte(s): too short for an IDX header")
    found = struct.unpack_from(">I", buf, 0)[0]
    if found != magic:
        hint = {IDX_IMAGES: "; it looks like IDX images: are path and labels swapped?",
                IDX_LABELS: "; it looks like IDX labels: are path and labels swapped?"}.get(found, "")
        raise DataError(f"{path}: not an IDX {what} file: magic number 0x{found:08x}, expected 0x{magic:08x}{hint}")
    ndim = magic & 0xFF
    if len(buf) < 4 + 4 * ndim:
        raise DataError(f"{path}: the IDX header is truncated ({len(buf)} bytes, {4 + 4 * ndim} needed)")
    return struct.unpack_from(f">{ndim}I", buf, 4), 4 + 4 * ndim


def read_idx(src: ImageSourceConfig, cfg: ImageConfig, warnings: Optional[list[str]] = None) -> Iterator[Item]:
    path = Path(src.path)
    buf, complete_gz = _read_bytes(path)
    (n, h, w), off = _idx_header(buf, path, IDX_IMAGES)
    cap = min(n, cfg.max_images or n)
    per = h * w
    whole = min(cap, (len(buf) - off) // per) if per else cap
    images = np.frombuffer(buf, dtype=np.uint8, count=whole * per, offset=off).reshape(whole, h, w)
    missing = n * per - (len(buf) - off)
    for i in range(whole, cap):
        got = max(0, min(per, len(buf) - off - i * per))
        yield Rejected(source_name(src), f"{path}:{i}", "truncated_idx",
                       f"image {i}: {per - got} of its {per} bytes missing (the file is {missing:,} bytes short of "
                       f"its header's {n:,} images{'' if complete_gz else '; the gzip stream ends early'})")
    labels = None
    if src.labels is not None:
        lpath = Path(src.labels)
        lbuf, _ = _read_bytes(lpath)
        (nl,), loff = _idx_header(lbuf, lpath, IDX_LABELS)
        avail = min(nl, len(lbuf) - loff, cfg.max_images or nl)
        labels = np.frombuffer(lbuf, dtype=np.uint8, count=avail, offset=loff)
        for i in range(n, avail):
            yield Rejected(source_name(src), f"{lpath}:{i}", "no_image", f"label {i} has no image: {path} holds {n:,}")
        labels = labels[:whole]
    yield from from_arrays(images, labels, src, cfg, str(path), warnings)


# -- arrays, built-in ----------------------------------------------------------------------------

def _load_npy(path: Path, what: str):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file ({what})") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({what}): {exc}") from None


def read_npz(src: ImageSourceConfig, cfg: ImageConfig, warnings: Optional[list[str]] = None) -> Iterator[Item]:
    path = Path(src.path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files:
                raise DataError(f"{path}: no array named 'images' (arrays: {', '.join(z.files) or 'none'})")
            images = z["images"]
            labels = z["labels"] if "labels" in z.files else None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:  # BadZipFile is an OSError; pickled arrays a ValueError
        raise DataError(f"{path}: not a readable .npz file: {exc}") from None
    yield from from_arrays(images, labels, src, cfg, str(path), warnings)


def read_npy(src: ImageSourceConfig, cfg: ImageConfig, warnings: Optional[list[str]] = None) -> Iterator[Item]:
    images = _load_npy(Path(src.path), "images")
    labels = _load_npy(Path(src.labels), "labels") if src.labels else None
    yield from from_arrays(images, labels, src, cfg, str(src.path), warnings)


def read_digits(src: ImageSourceConfig, cfg: ImageConfig, warnings: Optional[list[str]] = None) -> Iterator[Item]:
    """scikit-learn's 8x8 digits: values 0..16 scaled to 0..255, labels '0'..'9'."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * 255 / 16).astype(np.uint8)  # (1797, 8, 8)
    yield from from_arrays(images, d.target, src, cfg, "digits", warnings)


# -- class folders -------------------------------------------------------------------------------

def _class_files(root: Path, name: str) -> tuple[list[tuple[Path, str]], list[Rejected]]:
    """(image file, class) pairs in sorted order, and the files that are not images."""
    files, rejects = [], []
    for f in sorted(root.iterdir()):
        if f.is_file():
            reason = "no_label" if f.suffix.lower() in IMAGE_EXTENSIONS else "not_an_image"
            rejects.append(Rejected(name, str(f), reason, "not inside a class subfolder"))
    for cls in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(p for p in cls.rglob("*") if p.is_file()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((f, cls.name))
            else:
                rejects.append(Rejected(name, str(f), "not_an_image",
                                        f"extension {f.suffix or '(none)'!r} is not one of {', '.join(IMAGE_EXTENSIONS)}"))
    return files, rejects


def _capped(files: list[tuple[Path, str]], cap: Optional[int]) -> list[tuple[Path, str]]:
    """At most ``cap`` files, taken round-robin across classes so every class is represented."""
    if cap is None or cap >= len(files):
        return files
    by_class: dict[str, list[int]] = {}
    for i, (_, c) in enumerate(files):
        by_class.setdefault(c, []).append(i)
    order = [i for k in range(max(map(len, by_class.values()))) for ids in by_class.values() if k < len(ids)
             for i in (ids[k],)]
    return [files[i] for i in sorted(order[:cap])]


def decode_image(path: Path, channels: Optional[int], size) -> np.ndarray:
    """One PNG/JPEG/BMP/GIF file as uint8 (C, H, W): ``channels`` (None: gray stays gray, RGBA stays
    RGBA, else RGB), resized bilinearly to ``size`` (H, W) when given. Pillow's errors propagate."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if channels is None:
            channels = 1 if im.mode in GRAY_MODES else 4 if im.mode == "RGBA" else 3
        im = im.convert(PIL_MODES[channels])
        if size is not None:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def is_glob(path) -> bool:
    return any(ch in str(path) for ch in "*?[")


def image_files(path: str) -> list[Path]:
    """What a user points prediction at: one image file, a glob (``shots/*.png``), or a folder
    (its images, and those of its subfolders), in sorted order."""
    import glob

    if is_glob(path):
        return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def read_folder(src: ImageSourceConfig, cfg: ImageConfig, warnings: Optional[list[str]] = None) -> Iterator[Item]:
    root, name = Path(src.path), source_name(src)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (format: folder expects one subfolder per class)")
    files, rejects = _class_files(root, name)
    yield from rejects
    channels, shape, first = cfg.channels, None, None
    buf, labels, ids = [], [], []
    for f, cls in _capped(files, cfg.max_images):
        try:
            a = decode_image(f, channels, cfg.size)
        except Exception as exc:  # Pillow raises many kinds on hostile files; each is one rejected image
            yield Rejected(name, str(f), "unreadable_image", f"{type(exc).__name__}: {exc}")
            continue
        channels = a.shape[0]
        if shape is None:
            shape, first = a.shape, f
        elif a.shape != shape:
            yield Rejected(name, str(f), "wrong_shape", f"{a.shape[1]}x{a.shape[2]} (HxW) while the first image "
                           f"{first} is {shape[1]}x{shape[2]}; set data.image.size to resize all images")
            continue
        buf.append(a), labels.append(cls), ids.append(str(f))
        if len(buf) == CHUNK:
            yield ImageBatch(np.stack(buf), labels, ids, name)
            buf, labels, ids = [], [], []
    if buf:
        yield ImageBatch(np.stack(buf), labels, ids, name)


READERS = {"idx": read_idx, "npz": read_npz, "npy": read_npy, "folder": read_folder, "builtin": read_digits}


def read_batches(src: ImageSourceConfig, cfg: ImageConfig, warnings: Optional[list[str]] = None) -> Iterator[Item]:
    """The source as :class:`ImageBatch` chunks and :class:`Rejected` records."""
    fmt = detect_format(src)
    if fmt != "builtin" and not Path(src.path).exists():
        raise DataError(f"{src.path}: no such file or folder (data.image.sources)")
    return READERS[fmt](src, cfg, warnings)


def read_source(src: ImageSourceConfig, cfg: ImageConfig,
                warnings: Optional[list[str]] = None) -> Iterator[Union[ImageRecord, Rejected]]:
    """The source one record at a time: :class:`ImageRecord` (pixels uint8 (C, H, W)) or :class:`Rejected`.
    Warnings (clipped pixel values) are printed and, when ``warnings`` is a list, appended to it."""
    for item in read_batches(src, cfg, warnings):
        if isinstance(item, Rejected):
            yield item
            continue
        for i in range(len(item.ids)):
            yield ImageRecord(item.ids[i], item.images[i], item.labels[i], item.source)
