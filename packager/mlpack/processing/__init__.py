"""Pre- and post-processing an artifact declares, decided and checked at build.

    resolve_processing(request, info, settings)  before anything is written: which steps,
        their settings, the files to ship, the packages to pin and the served signature;
        the sample request is run through the processing and the source model
    ship_processing(resolved, root, model, ...)   the files into the artifact's processing/,
        and the sample through the processing and the *shipped* model
    sentence_calibration(path, resolved, folder)  --calibration FILE.txt: sentences -> .npz

Preprocessing is one of: a tokenizer (text), an image spec, the user's hook; post-
processing one of: class labels, the user's hook. The serving side is
`mlpack_runtime.processing` (runtime/processing/), which the checks here run.
See docs/processing.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fsutil import scratch_folder
from ..model.info import ModelInfo, Signature, TensorSpec
from ..runtime.processing.labels import LABEL, TOP_LABELS, TOP_PROBABILITIES
from ..runtime.validation import _jsonable
from .check import length_groups_agree, run_sample
from .files import Source, copy_files
from .hook import HookModule, first_line
from .image import resolve_image
from .labels import resolve_labels, scores_kind
from .packages import pinned
from .request import MODEL_LABELS, NO_TOKENIZER, ProcessingRequest
from .sample import image_sample, tensor_sample, text_sample
from .schema import PROCESSING_DIR, ProcessingSection, TextPreprocess
from .text import find_tokenizer, is_sentences, read_sentences, resolve_text

__all__ = ["MODEL_LABELS", "NO_TOKENIZER", "PROCESSING_DIR", "ProcessingRequest", "ProcessingSection",
           "ResolvedProcessing", "is_sentences", "resolve_processing", "sentence_calibration", "ship_processing",
           "tokenizer_for_sentences"]

@dataclass
class ResolvedProcessing:
    section: ProcessingSection
    model: Signature  # the model's own signature, which the processing wraps
    sources: dict[str, Source] = field(default_factory=dict)  # artifact path -> file or bytes

    @property
    def packages(self) -> list[str]:
        """What the processing imports at serving, pinned: installed into the artifact without
        their own dependencies (tokenizers needs huggingface-hub only to download)."""
        return pinned({step.kind for step in self.section.steps})

    @property
    def text(self) -> TextPreprocess | None:
        pre = self.section.preprocess
        return pre if isinstance(pre, TextPreprocess) else None

    @property
    def files(self) -> list[str]:
        return sorted(self.sources)


def resolve_processing(request: ProcessingRequest, info: ModelInfo, settings: dict[str, Any]) -> ResolvedProcessing | None:
    """Decide and check the processing for the model; None when there is none. Writes nothing
    but a scratch folder (removed) where the sample runs through it and the source model."""
    hook = HookModule(request.hook) if request.hook else None
    _check_one_per_side(request, hook)
    asked = request.image_preprocess or (hook and hook.has("preprocess"))
    # A tokenizer found beside the model yields to preprocessing asked for by name.
    tokenizer = find_tokenizer(NO_TOKENIZER if asked and not request.tokenizer else request.tokenizer, info)
    model = info.signature
    batch = _batch_dim(model)
    sources: dict[str, Source] = {}
    hook_step = hook.step() if hook else None
    if hook_step:
        sources[hook_step.module.path] = hook.path

    pre, inputs, sample = None, model.inputs, None
    if tokenizer:
        pre = resolve_text(*tokenizer, info)
        sources[pre.tokenizer.path] = tokenizer[0]
        inputs, sample = [TensorSpec(name=pre.input, dtype="object", shape=[batch])], text_sample(pre)
    elif request.image_preprocess:
        pre = resolve_image(request.image_preprocess, info)
        inputs, sample = [TensorSpec(name=pre.input, dtype="object", shape=[batch])], image_sample(pre)
    elif hook and hook.has("preprocess"):
        pre, inputs = hook_step, hook.inputs or model.inputs

    post, outputs = None, model.outputs
    if request.labels:
        post, content = resolve_labels(request.labels, request.top_k, info)
        sources[post.labels.path] = content
        outputs = [TensorSpec(name=LABEL, dtype="object", shape=[batch]),
                   TensorSpec(name=TOP_LABELS, dtype="object", shape=[batch, post.top_k]),
                   TensorSpec(name=TOP_PROBABILITIES, dtype="float32", shape=[batch, post.top_k])]
    elif hook and hook.has("postprocess"):
        post, outputs = hook_step, hook.outputs or []  # read off the sample's answer below, unless declared
    if pre is None and post is None:
        return None
    if sample is None and hook and hook.example is not None:
        sample = _jsonable(hook.example)
    section = ProcessingSection(preprocess=pre, postprocess=post, signature=Signature(inputs=inputs, outputs=outputs),
                                sample=sample if sample is not None else tensor_sample(inputs))
    with scratch_folder("processing") as scratch:
        copy_files(sources, scratch.path)
        section = _decide_from_sample(section, scratch.path, info.path, model, settings)
    return ResolvedProcessing(section, model, sources)


def _check_one_per_side(request: ProcessingRequest, hook: HookModule | None) -> None:
    explicit = [name for name, given in (
        ("--tokenizer", request.tokenizer not in (None, NO_TOKENIZER)),
        ("--image-preprocess", request.image_preprocess is not None),
        (f"--processing {hook.path.name if hook else ''} (preprocess)", hook and hook.has("preprocess"))) if given]
    if len(explicit) > 1:
        raise InputError(f"{explicit[0]} and {explicit[1]} both preprocess the model's inputs", "keep one of them")
    if request.labels and hook and hook.has("postprocess"):
        raise InputError(f"--labels and --processing {hook.path.name} (postprocess) both postprocess the model's "
                         "outputs", "keep one of them")


def ship_processing(resolved: ResolvedProcessing, root: Path, model: Path, signature: Signature,
                    settings: dict[str, Any]) -> ProcessingSection:
    """Write the processing's files into the artifact at `root` and run the sample through
    them and the shipped model: a variant the processing does not fit fails the build here."""
    copy_files(resolved.sources, root)
    run_sample(resolved.section, root, model, signature, settings)
    return resolved.section


def _decide_from_sample(section: ProcessingSection, folder: Path, model: Path, signature: Signature,
                        settings: dict[str, Any]) -> ProcessingSection:
    """What only the model's answer tells: whether class scores are probabilities or logits,
    and the outputs a hook answers when its module does not declare them. Then the whole
    processing runs once more, as it will serve."""
    post = section.postprocess
    if post is not None and (post.kind == "labels" or not section.signature.outputs):
        values, _ = run_sample(section, folder, model, signature, settings, postprocess=False)
        by_name = dict(zip([o.name for o in signature.outputs], values))
        if post.kind == "labels":
            kind = scores_kind(by_name[post.output], post.count, post.output)
            section = section.model_copy(update={"postprocess": post.model_copy(update={"scores": kind})})
        else:
            answered = _hook_answer(folder / post.module.path, by_name)
            section = section.model_copy(update={"signature": Signature(
                inputs=section.signature.inputs, outputs=_specs_of(answered, _batch_dim(signature)))})
    pre = section.preprocess
    if pre is not None and pre.kind == "text" and pre.length_groups and \
            not length_groups_agree(section, folder, model, signature, settings):
        section = section.model_copy(update={"preprocess": pre.model_copy(update={"length_groups": None})})
    run_sample(section, folder, model, signature, settings)
    return ProcessingSection.model_validate(section.model_dump())


def _hook_answer(module: Path, outputs: dict[str, Any]) -> dict[str, Any]:
    """What the hook's postprocess answers to the model's outputs, by output name."""
    from ..runtime.processing.hook import Hook

    try:
        return Hook(module).postprocess(outputs)
    except Exception as exc:
        raise InputError(f"{module.name}'s postprocess fails on the model's answer to the sample: "
                         f"{first_line(exc)}", "see docs/processing.md") from None


def _specs_of(answered: dict[str, Any], batch: Any) -> list[TensorSpec]:
    """Output specs read off a sample answer: dtype, and the shape with a free first axis."""
    specs = []
    for name, value in answered.items():
        try:
            array = np.asarray(value)
        except ValueError:
            array = np.asarray(value, dtype=object)
        if array.dtype.kind in "OUS" or array.ndim == 0:
            dtype = "object"
        else:
            dtype = array.dtype.name
        shape = [batch, *array.shape[1:]] if array.ndim else None
        specs.append(TensorSpec(name=str(name), dtype=dtype, shape=shape))
    return specs


def _batch_dim(signature: Signature):
    first = next((s.shape[0] for s in signature.inputs if s.shape), None)
    return first if first is not None else "batch"


def tokenizer_for_sentences(path: Path, resolved: ResolvedProcessing | None) -> TextPreprocess:
    """The tokenizer a calibration file of sentences needs; one line naming the fix without one."""
    text = resolved.text if resolved else None
    if text is None:
        raise InputError(f"calibration file {path.name} holds sentences, which need a tokenizer",
                         "pass --tokenizer tokenizer.json, or a .npz of model inputs")
    return text


def sentence_calibration(path: Path, resolved: ResolvedProcessing | None, folder: Path) -> Path:
    """--calibration FILE.txt: the sentences tokenized as the service tokenizes them, saved as
    the .npz of model inputs the optimizer reads (rows padded to the longest one), FILE.txt.npz
    in `folder` (the report names it)."""
    text = tokenizer_for_sentences(path, resolved)
    from ..runtime.processing.text import TextPreprocess as Tokenize

    sentences = read_sentences(path)
    with scratch_folder("tokenizer") as scratch:
        copy_files({text.tokenizer.path: resolved.sources[text.tokenizer.path]}, scratch.path)
        model_inputs = [s.model_dump() for s in resolved.model.inputs]
        arrays = Tokenize(text.model_dump(), scratch.path, model_inputs).encode(sentences)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{path.name}.npz"
    np.savez(dest, **arrays)
    return dest
