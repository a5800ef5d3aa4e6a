"""lmforge: raw text → prepared data → pretrained, fine-tuned, evaluated Transformer."""

__version__ = "0.1.0"
