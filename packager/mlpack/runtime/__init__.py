"""The serving runtime that every artifact carries as the `mlpack_runtime` package.

It is copied verbatim into Bento services, Lambda handlers and images, so it depends on
the standard library, numpy and onnxruntime only, and imports nothing from mlpack.
"""

from .config import RuntimeConfig, load_runtime
from .served import ServedModel
from .validation import RequestError, outputs_to_json, parse_inputs

__all__ = ["RequestError", "RuntimeConfig", "ServedModel", "load_runtime", "outputs_to_json", "parse_inputs"]
