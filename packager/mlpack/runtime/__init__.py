"""The serving runtime that every artifact carries as the `mlpack_runtime` package.

It is copied verbatim into Bento services, Lambda handlers and images, so it depends on
the standard library, numpy and onnxruntime only, and imports nothing from mlpack; the
processing an artifact declares adds its library (tokenizers, Pillow) to that artifact
alone, imported only there (processing/).
"""

from .config import RuntimeConfig, load_runtime
from .processing import ServedSignature
from .providers import ProviderUnavailable
from .served import ServedModel
from .validation import RequestError, outputs_to_json, parse_inputs

__all__ = ["ProviderUnavailable", "RequestError", "RuntimeConfig", "ServedModel", "ServedSignature", "load_runtime", "outputs_to_json",
           "parse_inputs"]
