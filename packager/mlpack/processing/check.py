"""Run the sample request through the processing and a model, as the service will.

The runtime's own code does it (`mlpack_runtime.processing`, loaded from a folder laid
out as the app folders are), so what the build checks is what serves. Any failure is one
InputError naming the step and what went wrong.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import InputError
from ..model.info import Signature
from ..runtime.config import open_session
from ..runtime.processing import load_processing, run_groups
from ..runtime.validation import RequestError, outputs_to_json, parse_inputs
from .hook import first_line
from .schema import ProcessingSection

_FIX = "check the processing options against the model (mlpack inspect MODEL shows its inputs)"


def step_name(section: ProcessingSection, side: str) -> str:
    """How an error names the step: "the tokenizer", "my_module.py's preprocess"."""
    step = getattr(section, side)
    if step.kind == "hook":
        return f"{PurePosixPath(step.module.path).name}'s {side}"
    return {"text": "the tokenizer", "image": "the image preprocessing", "labels": "the labels"}[step.kind]


def run_sample(section: ProcessingSection, folder: Path, model: Path, signature: Signature,
               settings: dict[str, Any], *, postprocess: bool = True) -> tuple[list, list | None]:
    """(the model's outputs, the served outputs) for `section.sample`; served outputs are
    None when `postprocess` is False (the build decides a step's settings from the former)."""
    config = section.runtime_config()
    if not postprocess:
        config["postprocess"] = None
    model_inputs = [s.model_dump() for s in signature.inputs]
    model_outputs = [s.model_dump() for s in signature.outputs]
    try:
        processing = load_processing(config, folder, model_inputs, model_outputs)
    except Exception as exc:
        raise InputError(f"the processing does not load: {first_line(exc)}", _FIX) from None
    try:
        arrays = parse_inputs(section.sample, config["inputs"])
    except RequestError as exc:
        raise InputError(f"the sample input does not fit the served signature: {exc}", _FIX) from None
    feeds = arrays
    if section.preprocess is not None:
        what = step_name(section, "preprocess")
        try:
            feeds = processing.preprocess(arrays)
            feeds = parse_inputs(feeds, model_inputs)
        except RequestError as exc:
            raise InputError(f"{what} gives the model inputs it does not take: {exc}", _FIX) from None
        except Exception as exc:
            raise InputError(f"{what} fails on the sample input: {first_line(exc)}", _FIX) from None
    try:
        values = open_session(model, settings, ["CPUExecutionProvider"]).run(None, feeds)
    except Exception as exc:
        raise InputError(f"the model fails on the preprocessed sample: {first_line(exc)}", _FIX) from None
    if not postprocess or section.postprocess is None:
        return values, values if section.postprocess is None else None
    what = step_name(section, "postprocess")
    try:
        served = processing.postprocess(values)
        json.dumps(outputs_to_json(served, config["outputs"]))
    except KeyError as exc:
        raise InputError(f"{what} does not answer output {exc.args[0]!r} of the served signature", _FIX) from None
    except Exception as exc:
        raise InputError(f"{what} fails on the model's answer to the sample: {first_line(exc)}", _FIX) from None
    return values, served


def length_groups_agree(section: ProcessingSection, folder: Path, model: Path, signature: Signature,
                        settings: dict[str, Any]) -> bool:
    """Whether the model answers rows run in length groups as it answers them in one batch:
    rows of one word up to the whole sample sentence, in more than one group. A model
    whose outputs move with padding (no masking inside) disagrees, and runs one batch."""
    step = section.preprocess
    words = str(section.sample[step.input][0]).split()
    texts = [" ".join(words[: 1 + i % len(words)]) for i in range(2 * step.length_groups + 1)]
    model_inputs = [s.model_dump() for s in signature.inputs]
    processing = load_processing(section.runtime_config(), folder, model_inputs,
                                 [s.model_dump() for s in signature.outputs])
    feeds = processing.preprocess({step.input: np.array(texts, dtype=object)})
    session = open_session(model, settings, ["CPUExecutionProvider"])
    whole = session.run(None, feeds)
    grouped = run_groups(session, feeds, processing.groups(feeds))
    return all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(whole, grouped))
