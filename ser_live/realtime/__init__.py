"""The runtime: streaming speech-emotion recognition with ONNX Runtime (no TensorFlow here).

The public API is re-exported by the top package: ``from ser_live import EmotionRecognizer``.
"""
