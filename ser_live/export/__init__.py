"""Keras -> ONNX export (needs the [train] extra)."""
