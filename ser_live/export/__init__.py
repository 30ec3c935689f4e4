"""Export: Keras -> self-describing ONNX (tf2onnx, parity-checked), and pretrained encoders -> the frame-encoder graph.

The constants the commands' parsers show live here, so that ``ser-export --help`` needs neither onnx nor TensorFlow.
"""

DEFAULT_OPSET = 15
PARITY_TOLERANCE = 1e-4
QUANTIZE_CHOICES: tuple[str, ...] = ("int8",)
EXPORT_MODULES = ("onnx", "tf2onnx", "tensorflow")  # the train extra: what exporting a Keras run needs
