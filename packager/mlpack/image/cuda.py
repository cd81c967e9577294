"""What a GPU image carries of CUDA, decided from the target and the model's operators. Pure.

onnxruntime-gpu's CUDA provider links the CUDA runtime, cuBLAS and cuRAND of one CUDA major
version (the target's `[cuda]` wheels, NVIDIA's pip packages); the driver (libcuda.so.1)
comes from the host through the NVIDIA container toolkit. cuDNN is optional for the
provider since onnxruntime 1.28: only some operators' kernels call it, and cuDNN 9 loads
its sub-libraries on demand. So an image ships cuDNN only for a model with such operators,
and only the sub-libraries those load (docs/serving.md, "GPU images").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..targets import Target

# ONNX operators whose onnxruntime CUDA kernels call cuDNN, by the cuDNN 9 sub-libraries they
# load: reductions and normalizations (cudnnReduceTensor, batch and instance norm, pooling,
# LRN) the legacy "ops" library; convolutions the "cnn" library and the graph API's engines
# (which compile some kernels at run time with NVRTC); recurrent layers the "adv" library.
_OPS = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
        "BatchNormalization", "InstanceNormalization", "LRN", "MaxPool", "AveragePool",
        "GlobalMaxPool", "GlobalAveragePool", "LpPool", "Dropout"}
_CONV = {"Conv", "ConvTranspose", "FusedConv", "QLinearConv", "ConvInteger", "NhwcConv"}
_RNN = {"RNN", "LSTM", "GRU"}

CUDNN_BASE = ("libcudnn.so.9", "libcudnn_graph.so.9")  # the shim and the graph API every part needs
CUDNN_OPS = ("libcudnn_ops.so.9",)
CUDNN_CONV = ("libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_engines_precompiled.so.9",
              "libcudnn_engines_runtime_compiled.so.9", "libcudnn_heuristic.so.9")
CUDNN_RNN = ("libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_adv.so.9")


@dataclass(frozen=True)
class CudaPlan:
    """The CUDA part of one GPU artifact's image."""

    requirements: tuple[str, ...]  # pinned wheels added to the server's requirements
    cudnn_libraries: tuple[str, ...]  # the cuDNN sub-libraries kept (none: no cuDNN at all)
    why_cudnn: str  # in words, for the report and the Dockerfile's comment

    @property
    def cudnn(self) -> bool:
        return bool(self.cudnn_libraries)


def cuda_plan(target: Target, operators: Iterable[str]) -> CudaPlan | None:
    """None for targets without a `[cuda]` table (every CPU target)."""
    cuda = target.cuda
    if cuda is None:
        return None
    used = set(operators)
    conv, rnn, ops = sorted(used & _CONV), sorted(used & _RNN), sorted(used & _OPS)
    libraries: list[str] = []
    extra: list[str] = []
    linked = cuda.cudnn in cuda.wheels  # an onnxruntime-gpu that links cuDNN (before it was optional)
    if conv or rnn or ops or linked:
        libraries = list(dict.fromkeys((*CUDNN_BASE, *CUDNN_OPS, *(CUDNN_CONV if conv else ()),
                                         *(CUDNN_RNN if rnn else ()))))
        extra.append(cuda.cudnn)
        if conv and cuda.nvrtc:
            extra.append(cuda.nvrtc)  # the runtime-compiled engines
        why = f"cuDNN for {', '.join(conv + rnn + ops)}" if conv or rnn or ops else \
            "cuDNN's shim, graph API and ops library: this onnxruntime-gpu links cuDNN"
    else:
        why = "no cuDNN: none of the model's operators calls it"
    return CudaPlan(requirements=tuple(dict.fromkeys((*cuda.wheels, *extra))), cudnn_libraries=tuple(libraries),
                    why_cudnn=why)


def library_path(target: Target, site: str) -> list[str]:
    """The image's LD_LIBRARY_PATH: the CUDA wheels' library folders under `site`, then where
    some clusters mount the host's driver (GKE: /usr/local/nvidia/lib64)."""
    if target.cuda is None:
        return []
    return [f"{site}/{folder}" for folder in target.cuda.library_dirs] + list(target.cuda.driver_dirs)
