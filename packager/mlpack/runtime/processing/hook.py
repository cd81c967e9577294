"""The user's processing module (`mlpack build --processing my_module.py`), shipped in the
artifact and loaded from its file: `preprocess(inputs)` and/or `postprocess(outputs)`.

    preprocess(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]
        the request's inputs, checked against the served signature -> the model's inputs
    postprocess(outputs: dict[str, Any]) -> dict[str, Any]
        the model's outputs by name -> the answer's outputs by name (JSON-ready values)

A hook that raises ValueError refuses the request (HTTP 400 with its message); any other
exception is a server error.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from ..validation import RequestError

FUNCTIONS = ("preprocess", "postprocess")
MODULE_NAME = "mlpack_processing_hook"


def load_module(path: Path, name: str = MODULE_NAME):
    """Import a single-file module from its path (it may import numpy and the standard library)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class Hook:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.module = load_module(self.path)

    def preprocess(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("preprocess", dict(arrays))

    def postprocess(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("postprocess", dict(outputs))

    def _call(self, name: str, values: dict[str, Any]) -> dict[str, Any]:
        function: Callable[[dict], Any] = getattr(self.module, name)
        try:
            result = function(values)
        except RequestError:
            raise
        except ValueError as exc:  # the hook's way to say the request is wrong
            raise RequestError(f"{name}: {exc}") from None
        if not isinstance(result, Mapping):
            raise TypeError(f"{self.path.name}: {name} returned a {type(result).__name__}, not a dict of arrays")
        return dict(result)
