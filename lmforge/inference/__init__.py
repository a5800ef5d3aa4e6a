"""Inference: batched prediction for task models and sampling from language models."""
