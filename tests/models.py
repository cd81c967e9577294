"""Small ONNX models made in the tests with onnx.helper: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save_graph(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    """The graph as a checked model (IR 8, which every onnxruntime the targets pin reads), saved."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _linear(features: int, outputs: int, seed: int) -> tuple[list, list]:
    """The nodes and weights of y = x @ W + b (random W and b from `seed`)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((features, outputs)).astype(np.float32)
    bias = rng.standard_normal(outputs).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    return nodes, [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")]


def linear_model(path: Path, features: int = 4, outputs: int = 3, seed: int = 0) -> Path:
    """y = x @ W + b with a dynamic batch axis: input "x" [batch, features] float32."""
    nodes, initializer = _linear(features, outputs, seed)
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializer=initializer,
    )
    return save_graph(graph, path)


def free_width_model(path: Path, features: int = 4, outputs: int = 3) -> Path:
    """y = x @ W + b whose input declares both axes free: "x" float32 [batch, width]. A request
    of any width fits the signature; onnxruntime's MatMul refuses every width but `features`."""
    nodes, initializer = _linear(features, outputs, seed=0)
    graph = helper.make_graph(
        nodes,
        "free_width",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializer=initializer,
    )
    return save_graph(graph, path)


def residual_layer_norm_model(path: Path, hidden: int = 8) -> Path:
    """LayerNormalization(x + r) over [batch, sequence, hidden]: the pattern onnxruntime fuses into
    SkipLayerNormalization (SkipLayerNormFusion), as in every transformer block."""
    shape = ["batch", "sequence", hidden]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "r"], ["sum"]),
         helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1)],
        "residual_layer_norm",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("x", "r")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.ones(hidden, np.float32), "gamma"),
         numpy_helper.from_array(np.zeros(hidden, np.float32), "beta")])
    return save_graph(graph, path)


def linear_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """What onnxruntime answers for the model, the reference a server must match."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.astype(np.float32)})[0]


def fixed_batch_cnn(path: Path, batch: int = 1) -> Path:
    """A CNN whose input fixes its batch size, as many exported vision models do:
    image [batch, 3, 16, 16] -> Conv "conv1" -> Relu -> Conv "conv2" -> GlobalAveragePool
    -> Reshape to [batch, 16] ("features"), with `batch` a number (1 by default) in the graph.

    conv1 has a huge weight on input channel 0, which `fixed_batch_images` keeps at 0: float
    ignores it, but int8 per-channel scales follow it and zero every real weight of conv1, so
    int8 fails the gate until mixed precision keeps conv1 in float.
    """
    rng = np.random.default_rng(5)
    k1 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3
    k1[:, 0, 1, 1] = 1e7
    k2 = rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.2
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "K1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", "K2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
            helper.make_node("Reshape", ["p", "shape"], ["features"], name="flatten"),
        ],
        "fixed_batch_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 16])],
        initializer=[numpy_helper.from_array(k1, "K1"), numpy_helper.from_array(k2, "K2"),
                     numpy_helper.from_array(np.array([batch, 16], np.int64), "shape")],
    )
    return save_graph(graph, path)


def fixed_batch_images(path: Path, rows: int = 64) -> Path:
    """Calibration data for `fixed_batch_cnn`: rows of images whose channel 0 is always 0."""
    return dark_channel_images(path, (rows, 3, 16, 16), seed=0)


def dark_channel_images(path: Path, shape: tuple[int, ...], seed: int) -> Path:
    """An .npz of uniform random `image` rows whose channel 0 is always 0."""
    images = np.random.default_rng(seed).random(shape).astype(np.float32)
    images[:, 0] = 0.0
    np.savez(path, image=images)
    return path


WORDS = ["cat", "dog", "bird"]  # the words `text_and_numbers_model` knows, coded 0, 1, 2


def text_and_numbers_model(path: Path, features: int = 4, outputs: int = 3, seed: int = 0) -> Path:
    """Two inputs of two kinds, three outputs of three kinds (no optimizer variant applies):

    x "FP32" [batch, features] -> y = x @ W + b, float32 [batch, outputs]
    text "BYTES" [batch] -> code: LabelEncoder of WORDS (-1 for any other), int64 [batch]
                         -> echo: the strings as given, string [batch]
    """
    nodes, initializer = _linear(features, outputs, seed)
    graph = helper.make_graph(
        [
            *nodes,
            helper.make_node("LabelEncoder", ["text"], ["code"], domain="ai.onnx.ml", keys_strings=WORDS,
                             values_int64s=list(range(len(WORDS))), default_int64=-1),
            helper.make_node("Identity", ["text"], ["echo"]),
        ],
        "text_and_numbers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features]),
         helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs]),
         helper.make_tensor_value_info("code", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch"])],
        initializer=initializer,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnxruntime_reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of the model as onnxruntime answers it, by name."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


# The Open Inference Protocol's tensor data types and the ONNX element types they carry.
V2_DATATYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def every_datatype_model(path: Path) -> Path:
    """One input per protocol datatype, each passed through (Identity) to an output:
    input "in_fp32" float32 [batch, 2] -> output "out_fp32", and so on."""
    nodes, inputs, outputs = [], [], []
    for datatype, elem in V2_DATATYPES.items():
        name = datatype.lower()
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, ["batch", 2]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, ["batch", 2]))
    model = helper.make_model(helper.make_graph(nodes, "every_datatype", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def pyramid_cnn(path: Path, *, constant_weights: bool = False, opset: int = 17) -> Path:
    """A detector-like CNN with dynamic height and width that accepts only multiples of 32, as
    PP-OCR's text detector does: x [batch, 3, height, width] -> five stride-2 Conv+Relu
    ("conv1".."conv5", down to 1/32) -> the 1/32 map upsampled twice (Resize) and
    concatenated with the 1/16 map -> 1x1 Conv "head" -> GlobalAveragePool -> Flatten ->
    features [batch, 8]. At 16x16 the two maps are 2x2 and 1x1, and Concat fails.

    `constant_weights` keeps every weight in a `Constant` node instead of an initializer, as
    some exporters (paddle2onnx) write them.
    """
    rng = np.random.default_rng(7)
    channels = [3, 8, 8, 16, 16, 16]
    weights = {f"K{i + 1}": rng.standard_normal((channels[i + 1], channels[i], 3, 3)).astype(np.float32)
               * np.float32(1.5 / np.sqrt(9 * channels[i])) for i in range(5)}
    weights["KH"] = rng.standard_normal((8, 32, 1, 1)).astype(np.float32) * np.float32(0.3)
    nodes, previous = [], "x"
    for i in range(1, 6):
        nodes += [helper.make_node("Conv", [previous, f"K{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1],
                                   strides=[2, 2]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        previous = f"r{i}"
    scales = np.array([1, 1, 2, 2], np.float32)
    nodes += [
        helper.make_node("Resize", ["r5", "roi", "scales"], ["up"], name="upsample", mode="nearest"),
        helper.make_node("Concat", ["up", "r4"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", "KH"], ["h"], name="head"),
        helper.make_node("GlobalAveragePool", ["h"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["features"], name="flatten"),
    ]
    constants = {**weights, "roi": np.array([], np.float32), "scales": scales}
    if constant_weights:
        nodes = [helper.make_node("Constant", [], [name], name=f"const_{name}",
                                  value=numpy_helper.from_array(value, name)) for name, value in constants.items()
                 ] + nodes
        initializer = []
    else:
        initializer = [numpy_helper.from_array(value, name) for name, value in constants.items()]
    graph = helper.make_graph(
        nodes, "pyramid_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8])], initializer=initializer)
    return save_graph(graph, path, opset)


def conv_chain(path: Path, *, layers: int = 6, outliers: tuple[int, ...] = ()) -> Path:
    """image [batch, 8, 12, 12] -> `layers` x (Conv "convN" 3x3 + Relu) -> GlobalAveragePool -> Flatten
    -> features [batch, 8]. Channel 0 is always 0 all the way (`chain_images` zero it, and no layer
    writes it); the layers numbered in `outliers` (1-based) read it with a huge weight: float ignores
    it, but int8 per-channel scales follow it and zero every real weight of the layer."""
    rng = np.random.default_rng(11)
    nodes, inits, previous = [], [], "image"
    for i in range(1, layers + 1):
        k = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * np.float32(1.2 / np.sqrt(72))
        if i + 1 in outliers:
            k[0] = 0.0  # output channel 0 stays 0 for the next layer
        if i in outliers:
            k[1:, 0, 1, 1] = 1e3
        inits.append(numpy_helper.from_array(k, f"K{i}"))
        nodes += [helper.make_node("Conv", [previous, f"K{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        previous = f"r{i}"
    nodes += [helper.make_node("GlobalAveragePool", [previous], ["p"], name="pool"),
              helper.make_node("Flatten", ["p"], ["features"], name="flatten")]
    graph = helper.make_graph(nodes, "conv_chain",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 8, 12, 12])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8])],
                              initializer=inits)
    return save_graph(graph, path)


def chain_images(path: Path, rows: int = 64) -> Path:
    """Data for `conv_chain`: channel 0 of every image is 0."""
    return dark_channel_images(path, (rows, 8, 12, 12), seed=3)
