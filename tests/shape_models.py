"""Models of every common shape, made here from scikit-learn's bundled data and onnx.helper.

- `zipmap_classifier`: skl2onnx's defaults: `output_label` int64 and `output_probability`
  seq(map(int64, float)) (ZipMap), on the iris data.
- `string_label_classifier`: the same with string class names (seq(map(string, float))).
- `text_classifier`: TfidfVectorizer + LogisticRegression on raw strings: a string input,
  StringNormalizer (locale-dependent) and string labels.
- `defaults_model`, `optional_model`: an input with a default, an ONNX optional input.
- `external_model`: a float model whose weights are external data.
Each returns the path and the fitted scikit-learn estimator (or the reference function).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Hand-written sentences: a tiny two-topic corpus, no download.
SENTENCES = [
    ("the cat sat on the mat and purred", "cats"),
    ("a kitten chased the ball of yarn", "cats"),
    ("my cat sleeps all day in the sun", "cats"),
    ("cats meow when they are hungry", "cats"),
    ("the kitten climbed the curtain again", "cats"),
    ("our cat caught a mouse in the garden", "cats"),
    ("the dog barked at the mailman", "dogs"),
    ("a puppy fetched the stick from the lake", "dogs"),
    ("my dog loves long walks in the park", "dogs"),
    ("dogs wag their tails when happy", "dogs"),
    ("the puppy chewed my new shoes", "dogs"),
    ("our dog guards the house at night", "dogs"),
]
PROBE_SENTENCES = ["the kitten purred on the mat", "the puppy barked in the park",
                   "a cat and a dog", "walks in the sun"]
CLASS_NAMES = np.array(["setosa", "versicolor", "virginica"])


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def _save(onx: onnx.ModelProto, path: Path) -> Path:
    onnx.save(onx, str(path))
    return path


def zipmap_classifier(path: Path):
    """LogisticRegression on iris, converted with skl2onnx's defaults (ZipMap output)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    return _save(to_onnx(clf, x[:1], target_opset=17), path), clf


def string_label_classifier(path: Path):
    """A RandomForest whose classes are names: string labels and seq(map(string, float))."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    x, y = iris()
    clf = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, CLASS_NAMES[y])
    return _save(to_onnx(clf, x[:1], target_opset=17), path), clf


def text_classifier(path: Path):
    """TfidfVectorizer + LogisticRegression on raw sentences, skl2onnx's defaults."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, labels = zip(*SENTENCES)
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10.0)).fit(list(texts), list(labels))
    onx = convert_sklearn(pipe, initial_types=[("text", StringTensorType([None, 1]))], target_opset=17)
    return _save(onx, path), pipe


def _finish(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return _save(model, path)


def defaults_model(path: Path) -> Path:
    """y = x * scale, where `scale` [1] is an input with a default of 2 (an initializer)."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "defaults",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.array([2.0], np.float32), "scale")],
    )
    return _finish(graph, path)


def optional_model(path: Path) -> Path:
    """y = x + bias when the optional input `bias` is given, else y = x (ONNX optional type)."""
    bias = helper.make_value_info(
        "bias", helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, ["batch", 3])))
    then = helper.make_graph(
        [helper.make_node("OptionalGetElement", ["bias"], ["b"]), helper.make_node("Add", ["x", "b"], ["with_bias"])],
        "then", [], [helper.make_tensor_value_info("with_bias", TensorProto.FLOAT, ["batch", 3])])
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["as_is"])],
        "else", [], [helper.make_tensor_value_info("as_is", TensorProto.FLOAT, ["batch", 3])])
    graph = helper.make_graph(
        [helper.make_node("OptionalHasElement", ["bias"], ["has_bias"]),
         helper.make_node("If", ["has_bias"], ["y"], then_branch=then, else_branch=other)],
        "optional",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]), bias],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    return _finish(graph, path, opset=18)


def external_model(folder: Path, features: int = 64, hidden: int = 128, outputs: int = 4, seed: int = 0) -> Path:
    """A two-layer MLP (x [batch, features] -> logits [batch, outputs]) whose weights are
    stored as external data, in `mlp.onnx.weights` beside `mlp.onnx`."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((features, hidden)) / np.sqrt(features)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, outputs)) / np.sqrt(hidden)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W2"], ["logits"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mlp.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="mlp.onnx.weights", size_threshold=0)
    return path


def unloadable_model(path: Path) -> Path:
    """Valid ONNX that onnxruntime refuses at load: it has no Add kernel for strings."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "a"], ["b"])], "strings",
        [helper.make_tensor_value_info("a", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("b", TensorProto.STRING, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return _save(model, path)


def run_onnx(path: Path, feeds: dict) -> list:
    """What onnxruntime answers (the locale made portable first, as the build does)."""
    import onnxruntime as ort

    from mlpack.model.locale_ops import make_portable

    model = onnx.load(str(path))
    make_portable(model)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)
