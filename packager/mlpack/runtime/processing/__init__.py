"""Pre- and post-processing that an artifact declares, run around the model at serving.

runtime.json's `"processing"` (written from the manifest's `processing` section) says what
runs before the model (`preprocess`: a tokenizer for `text`, an image spec for encoded
`image` uploads, or the user's hook) and after it (`postprocess`: class labels with top-k,
or the user's hook), and the signature the service then serves. `ServedModel` calls
`Processing` for the Bento and the Lambda handler alike; mlpack's build calls the same
code to check the processing on the shipped model, and to tokenize calibration sentences.

Each kind imports its library (tokenizers, Pillow) only when an artifact declares it,
so an artifact without processing imports neither and does not ship them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

Spec = Mapping[str, Any]  # a tensor spec as runtime.json holds it: name, dtype, shape
Arrays = dict[str, Any]
Step = Callable[[Arrays], Arrays]


@dataclass(frozen=True)
class ServedSignature:
    """What the service takes and answers: the model's signature, or what processing makes of it.

    The /predict checks, the Open Inference Protocol's metadata and its tensors all read it."""

    inputs: list[Spec]
    outputs: list[Spec]

    def input_names(self) -> list[str]:
        return [s["name"] for s in self.inputs]

    def output_names(self) -> list[str]:
        return [s["name"] for s in self.outputs]


@dataclass
class Processing:
    signature: ServedSignature
    model_outputs: list[str]
    pre: Step | None = None
    post: Step | None = None
    upload_input: str | None = None  # the served input an encoded file upload fills (an image)
    kinds: dict[str, str] = field(default_factory=dict)  # "preprocess"/"postprocess" -> kind
    # feeds -> [(row indices, the group's feeds)] to run apart, or None for one batch (text's length groups)
    group: Callable[[Arrays], list | None] | None = None

    def preprocess(self, arrays: Arrays) -> dict[str, np.ndarray]:
        """Served inputs (already checked against the signature) -> the model's feeds."""
        return self.pre(arrays) if self.pre else arrays

    def groups(self, feeds: Arrays) -> list | None:
        """How the model runs these feeds: None as one batch, else [(row indices, feeds)] apart."""
        return self.group(feeds) if self.group else None

    def postprocess(self, values: list) -> list:
        """The model's outputs, in its order -> the served outputs, in the signature's order."""
        if self.post is None:
            return values
        answered = self.post(dict(zip(self.model_outputs, values)))
        return [answered[name] for name in self.signature.output_names()]


def load_processing(config: Mapping[str, Any] | None, folder: Path | str, model_inputs: list[Spec],
                    model_outputs: list[Spec]) -> Processing:
    """The processing runtime.json declares (None: the model as it is), with its files in `folder`."""
    names = [o["name"] for o in model_outputs]
    if not config:
        return Processing(ServedSignature(list(model_inputs), list(model_outputs)), names)
    from pathlib import Path  # only with processing: a plain artifact's cold start skips it

    folder = Path(folder)
    signature = ServedSignature(list(config["inputs"]), list(config["outputs"]))
    processing = Processing(signature, names)
    hook = None
    for side in ("preprocess", "postprocess"):
        step = config.get(side)
        if not step:
            continue
        processing.kinds[side] = step["kind"]
        if step["kind"] == "hook":
            from .hook import Hook

            hook = hook or Hook(folder / step["module"]["path"])  # one module, loaded once, for both sides
            if side == "preprocess":
                processing.pre = hook.preprocess
            else:
                processing.post = hook.postprocess
        elif step["kind"] == "text":
            from .text import TextPreprocess

            processing.pre = TextPreprocess(step, folder, model_inputs)
            processing.group = processing.pre.groups if step.get("length_groups") else None
        elif step["kind"] == "image":
            from .image import ImagePreprocess

            processing.pre = ImagePreprocess(step)
            processing.upload_input = step["input"]
        elif step["kind"] == "labels":
            from .labels import LabelsPostprocess

            processing.post = LabelsPostprocess(step, folder)
        else:
            raise ValueError(f"runtime.json declares unknown {side} kind {step['kind']!r}")
    return processing


def run_groups(session: Any, feeds: dict[str, np.ndarray], groups: list | None) -> list:
    """The model's outputs for `feeds`: one run, or one per group of rows (processing's
    length groups), the rows then put back in the request's order."""
    if not groups:
        return session.run(None, feeds)
    answers = [(rows, session.run(None, group)) for rows, group in groups]
    total = sum(len(rows) for rows, _ in answers)
    values = [np.empty((total, *value.shape[1:]), value.dtype) for value in answers[0][1]]
    for rows, answer in answers:
        for whole, part in zip(values, answer):
            whole[rows] = part
    return values


__all__ = ["Processing", "ServedSignature", "load_processing", "run_groups"]
