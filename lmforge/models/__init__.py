"""Our Transformer models: shared body, separate heads, HF interop."""
