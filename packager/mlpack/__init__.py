"""mlpack: from a trained ONNX model to a deployable artifact per hardware target."""

__version__ = "0.1.0"
