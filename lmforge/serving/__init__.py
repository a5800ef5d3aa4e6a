"""Serving: ``lmforge serve`` — a FastAPI app with dynamic batching over a fine-tuned model."""
