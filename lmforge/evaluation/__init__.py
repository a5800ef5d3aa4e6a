"""Evaluation: metrics, reports, and the ``lmforge evaluate`` command (never imports training)."""
