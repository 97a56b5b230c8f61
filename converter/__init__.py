"""Hugging Face model -> self-describing ONNX model folder. torch lives here, never in engine/."""
