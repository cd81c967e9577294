"""The files an ONNX model is stored in: the `.onnx` graph and, for some, external data.

A model keeps its weights inline (one file) or beside it ("external data": the graph
names a file and an offset for each large tensor). mlpack keeps a model stored the way
it came: a model with external data stays external through optimization and ships as
`model.onnx` plus `model.onnx.data`. A protobuf message cannot exceed 2 GB, so a model
whose tensors add up to more than that is always saved external, whatever it came as.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx.external_data_helper import _get_all_tensors  # every tensor, subgraphs included

DATA_SUFFIX = ".data"  # model.onnx -> model.onnx.data, onnx's and PyTorch's convention
PROTOBUF_LIMIT = 2**31 - 1  # the largest protobuf message, in bytes
# Weights up to this much may stay inline; above it, the graph and the other fields need room too.
INLINE_LIMIT = PROTOBUF_LIMIT - (64 << 20)
EXTERNAL_THRESHOLD = 1024  # tensors under this many bytes stay inline in an external model


def data_file(path: Path) -> Path:
    """The one external data file mlpack writes for a model saved at `path`."""
    return path.with_name(path.name + DATA_SUFFIX)


def external_files(model: onnx.ModelProto) -> list[str]:
    """The external data files a model's tensors point to (paths relative to the model)."""
    files = set()
    for tensor in _get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.add(entry.value)
    return sorted(files)


def stored_external(path: Path) -> bool:
    """Whether the model file at `path` keeps tensors in external data (reads the graph only)."""
    return bool(external_files(onnx.load(str(path), load_external_data=False)))


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes the model's tensors take inline (a loaded model: external data read in)."""
    return sum(tensor.ByteSize() for tensor in _get_all_tensors(model))


def save_model(model: onnx.ModelProto, path: Path, *, external: bool) -> Path:
    """Save inline, or with every tensor of 1 KB or more in `path.name + ".data"`.

    `external` keeps the weights beside the graph (the model came that way); a model too
    large for one protobuf message is saved external regardless.
    """
    data = data_file(path)
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    if external or tensor_bytes(model) > INLINE_LIMIT:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=EXTERNAL_THRESHOLD)
    else:
        onnx.save_model(model, str(path))
    return path


def model_paths(path: Path) -> list[Path]:
    """The model file and its external data files, in that order."""
    graph = onnx.load(str(path), load_external_data=False)
    return [path] + [path.parent / name for name in external_files(graph)]


def model_bytes(path: Path) -> int:
    """The size of a model on disk: its file and its external data together."""
    return sum(p.stat().st_size for p in model_paths(path))


def copy_model(src: Path, dst: Path) -> list[Path]:
    """Copy a model and its external data; returns the files written, the model first.

    One external file is renamed after `dst` (`model.onnx.data`), the graph's references
    rewritten to match; several keep their names, relative to the model.
    """
    graph = onnx.load(str(src), load_external_data=False)
    files = external_files(graph)
    if not files:
        shutil.copyfile(src, dst)
        return [dst]
    if len(files) == 1:
        target = data_file(dst)
        for tensor in _get_all_tensors(graph):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = target.name
        onnx.save_model(graph, str(dst))  # the graph alone: its tensors still point outside
        shutil.copyfile(src.parent / files[0], target)
        return [dst, target]
    written = [Path(shutil.copyfile(src, dst))]
    for name in files:
        (dst.parent / name).parent.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copyfile(src.parent / name, dst.parent / name)))
    return written
