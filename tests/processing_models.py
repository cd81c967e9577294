"""Models and processing files made in the tests for bundled processing: a tokenizer
trained here on a few sentences (the `tokenizers` library, offline), a tiny text encoder
and classifier with BERT's input names, a small CNN image classifier, and a hook module.
Nothing is downloaded."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SENTENCES = [
    "The model answers raw sentences without a client tokenizer.",
    "Tokenizers turn text into ids that the encoder embeds.",
    "A slim image carries the model, the runtime and the tokenizer file.",
    "Every request is checked before it reaches the model.",
    "Short text.",
    "Lambda functions start cold and answer the first request quickly.",
    "Padding goes to the longest row of the request.",
    "Attention masks hide the padded positions from the pooling.",
    "Labels name the classes that a classifier scores.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
]
DIM = 16
POSITIONS = 24  # rows of the position table: the longest sequence the encoder embeds


def train_tokenizer(path: Path, sentences: list[str] = SENTENCES, *, truncation: int | None = None) -> Path:
    """A BERT-style WordPiece tokenizer.json: lowercasing, [CLS] ... [SEP], [PAD] = 0."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokenizer.train_from_iterator(sentences * 3, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special, show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    if truncation:
        tokenizer.enable_truncation(truncation)
    tokenizer.save(str(path))
    return path


def vocab_size(tokenizer_path: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_path)).get_vocab_size()


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _encoder_nodes(vocab: int, rng: np.random.Generator) -> tuple[list, list]:
    """Word + token type + position embeddings, masked mean pooling: "pooled" [batch, DIM]."""
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, DIM)).astype(np.float32), "word_embeddings"),
        numpy_helper.from_array(rng.standard_normal((2, DIM)).astype(np.float32), "token_type_embeddings"),
        numpy_helper.from_array(rng.standard_normal((POSITIONS, DIM)).astype(np.float32) * 0.1,
                                "position_embeddings"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array(1e-9, np.float32), "tiny"),
    ]
    nodes = [
        helper.make_node("Gather", ["word_embeddings", "input_ids"], ["words"]),
        helper.make_node("Gather", ["token_type_embeddings", "token_type_ids"], ["types"]),
        helper.make_node("Shape", ["input_ids"], ["seq"], start=1, end=2),
        helper.make_node("Slice", ["position_embeddings", "zero", "seq", "axis0"], ["positions"]),
        helper.make_node("Add", ["words", "types"], ["wt"]),
        helper.make_node("Add", ["wt", "positions"], ["x"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["x", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_f", "axis1"], ["count0"], keepdims=1),
        helper.make_node("Max", ["count0", "tiny"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
    ]
    return nodes, inits


def _token_inputs() -> list:
    return [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in ("input_ids", "attention_mask", "token_type_ids")]


def text_encoder(path: Path, vocab: int, seed: int = 0) -> Path:
    """input_ids, attention_mask, token_type_ids (int64 [batch, sequence]) -> "embedding"
    [batch, DIM], L2-normalised: a sentence encoder in miniature."""
    nodes, inits = _encoder_nodes(vocab, np.random.default_rng(seed))
    inits.append(numpy_helper.from_array(np.array(1e-12, np.float32), "eps"))
    nodes += [
        helper.make_node("ReduceL2", ["pooled"], ["norm0"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm0", "eps"], ["norm"]),
        helper.make_node("Div", ["pooled", "norm"], ["embedding"]),
    ]
    graph = helper.make_graph(nodes, "tiny_text_encoder", _token_inputs(),
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def text_classifier(path: Path, vocab: int, classes: int = 3, seed: int = 1) -> Path:
    """The encoder's pooled vector -> "logits" [batch, classes] (no softmax: logits)."""
    rng = np.random.default_rng(seed)
    nodes, inits = _encoder_nodes(vocab, rng)
    inits.append(numpy_helper.from_array(rng.standard_normal((DIM, classes)).astype(np.float32) * 3, "head"))
    nodes.append(helper.make_node("MatMul", ["pooled", "head"], ["logits"]))
    graph = helper.make_graph(nodes, "tiny_text_classifier", _token_inputs(),
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def text_reference(model: Path, tokenizer: Path, texts: list[str]) -> np.ndarray:
    """What a client does without bundled processing: its own tokenizer, then onnxruntime."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    encoded = tok.encode_batch(texts)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    feeds = {"input_ids": np.array([e.ids for e in encoded], np.int64),
             "attention_mask": np.array([e.attention_mask for e in encoded], np.int64),
             "token_type_ids": np.array([e.type_ids for e in encoded], np.int64)}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


IMAGE_SIZE = 32
IMAGE_CLASSES = ["cat", "dog", "bird", "fish"]


def image_classifier(path: Path, size: int = IMAGE_SIZE, seed: int = 2) -> Path:
    """"pixels" float32 [batch, 3, size, size] -> Conv -> Relu -> GlobalAveragePool -> Gemm
    -> Softmax -> "probabilities" [batch, 4]."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "K"),
        numpy_helper.from_array(rng.standard_normal((8, len(IMAGE_CLASSES))).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(len(IMAGE_CLASSES)).astype(np.float32) * 0.1, "B"),
    ]
    nodes = [
        helper.make_node("Conv", ["pixels", "K"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_image_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(IMAGE_CLASSES)])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


IMAGE_SPEC = """\
# ImageNet-style preprocessing, as torchvision's Resize + CenterCrop + Normalize.
size = [32, 32]
resize = 40
channels = "RGB"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
layout = "NCHW"
"""


def write_labels(path: Path, names: list[str]) -> Path:
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def photo_png(path: Path, width: int = 60, height: int = 45, seed: int = 3) -> bytes:
    """A PNG that is not square and not the model's size: resizing and cropping matter."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([rows * 255 // height, cols * 255 // width, rng.integers(0, 256, (height, width))], -1)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path, format="PNG")
    return path.read_bytes()


def reference_pixels(image_bytes: bytes) -> np.ndarray:
    """IMAGE_SPEC applied by hand, as a user would before calling the model (torchvision's
    Resize(40) + CenterCrop(32) + ToTensor + Normalize, written with Pillow and numpy)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    w, h = image.size
    short = 40
    image = image.resize((int(short * w / h), short) if w > h else (short, int(short * h / w)), Image.BILINEAR)
    w, h = image.size
    left, top = int(round((w - 32) / 2.0)), int(round((h - 32) / 2.0))
    image = image.crop((left, top, left + 32, top + 32))
    x = np.asarray(image, np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def hook_module(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def served_app(folder: Path, model: Path, request=None, target: str = "x86-cpu"):
    """The app folder a build writes for `model` with this processing (mlpack's own resolve,
    ship and write_app), and the ServedModel both entry points run on it. No optimizer, no
    Bento: the model ships as given."""
    from mlpack.steps.app import write_app
    from mlpack.model.info import inspect_model, sha256_file
    from mlpack.processing import ProcessingRequest, resolve_processing, ship_processing
    from mlpack.render.context import RenderContext
    from mlpack.runtime import ServedModel

    from .manifests import make_manifest

    info = inspect_model(model)
    manifest = make_manifest(target, signature=info.signature, model_sha256=sha256_file(model))
    settings = manifest.target.runtime.session_settings()
    resolved = resolve_processing(request or ProcessingRequest(), info, settings)
    root = folder / "artifact"
    root.mkdir(parents=True, exist_ok=True)
    if resolved is not None:
        manifest.processing = ship_processing(resolved, root, model, info.signature, settings)
    app = folder / "app"
    write_app(app, RenderContext.from_manifest(manifest), model, root)
    return ServedModel(app), manifest
