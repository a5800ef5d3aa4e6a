"""Export trained models to other formats (Hugging Face folders; ONNX to come)."""
