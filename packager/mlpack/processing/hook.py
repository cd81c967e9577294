"""--processing my_module.py: the user's preprocess and/or postprocess, checked at build.

The module is one Python file. Besides its functions it may declare what it serves:

    INPUTS = [{"name": "text", "dtype": "object", "shape": ["batch"]}]   # default: the model's inputs
    OUTPUTS = [{"name": "score", "dtype": "float32", "shape": ["batch"]}]  # default: read off the sample's answer
    EXAMPLE = {"text": ["an example request"]}                          # default: made from INPUTS

The build imports it, runs it on EXAMPLE (through the shipped model, see check.py), and
ships it as processing/<file name>, recorded with its sha256.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ..errors import InputError
from ..model.info import TensorSpec
from ..runtime.processing.hook import FUNCTIONS, load_module
from .files import file_ref
from .schema import HookProcessing

_FIX = "see docs/processing.md for what a processing module holds"


class HookModule:
    """What the user's module offers, read once at build."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InputError(f"processing module {path} does not exist", "pass a .py file")
        if path.suffix != ".py":
            raise InputError(f"processing module {path.name} is not a .py file", "pass a Python module")
        self.path = path
        try:
            self.module = load_module(path, "mlpack_processing_hook_build")
        except Exception as exc:  # anything the user's code raises on import
            raise InputError(f"processing module {path.name} fails to import: {first_line(exc)}", _FIX) from None
        self.functions = [name for name in FUNCTIONS if callable(getattr(self.module, name, None))]
        if not self.functions:
            raise InputError(f"processing module {path.name} defines neither preprocess nor postprocess", _FIX)
        self.inputs = self._specs("INPUTS")
        self.outputs = self._specs("OUTPUTS")
        self.example = getattr(self.module, "EXAMPLE", None)
        if self.example is not None and not isinstance(self.example, dict):
            raise InputError(f"processing module {path.name}: EXAMPLE is a {type(self.example).__name__}, "
                             "not a dict of input name -> value", _FIX)

    def has(self, function: str) -> bool:
        return function in self.functions

    def _specs(self, name: str) -> list[TensorSpec] | None:
        value = getattr(self.module, name, None)
        if value is None:
            return None
        try:
            return TypeAdapter(list[TensorSpec]).validate_python(value)
        except ValidationError as exc:
            item = exc.errors()[0]
            where = ".".join(str(p) for p in item["loc"])
            raise InputError(f"processing module {self.path.name}: {name}[{where}]: {item['msg']}",
                             'declare each as {"name": ..., "dtype": "float32", "shape": ["batch", 4]}') from None

    def step(self) -> HookProcessing:
        inputs_from = outputs_from = None
        if self.has("preprocess"):
            inputs_from = "INPUTS in the module" if self.inputs else "the model's inputs"
        if self.has("postprocess"):
            outputs_from = "OUTPUTS in the module" if self.outputs else "the answer to the sample input"
        return HookProcessing(module=file_ref(self.path, self.path.name), functions=self.functions,
                              inputs_from=inputs_from, outputs_from=outputs_from)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
