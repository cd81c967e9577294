"""Length groups: a text request of many rows runs as groups of rows of similar length,
each padded to its own longest row, and answers exactly as one batch would.

The build allows it only where it cannot change an answer: the model masks padding, its
outputs are per row with no sequence axis, and grouped outputs equal one batch's on the
model itself (a model that reads its padding is caught by that check).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from .processing_models import (
    DIM, SENTENCES, _encoder_nodes, _save, _token_inputs, served_app, text_encoder, text_reference,
    train_tokenizer, vocab_size,
)

# Rows of every length the tokenizer gives, more than two groups' worth.
TEXTS = [" ".join(SENTENCES[i % len(SENTENCES)].split()[: 1 + i % 9]) for i in range(21)]


class RecordingSession:
    """Wraps the served session and records the shape of input_ids of each run."""

    def __init__(self, session) -> None:
        self.session, self.widths = session, []

    def run(self, names, feeds):
        self.widths.append(feeds["input_ids"].shape)
        return self.session.run(names, feeds)


@pytest.fixture
def tokenizer(tmp_path: Path) -> Path:
    return train_tokenizer(tmp_path / "tokenizer.json")


def test_many_sentences_run_in_groups_of_similar_length_and_answer_as_one_batch(tokenizer, tmp_path: Path) -> None:
    model = text_encoder(tmp_path / "model.onnx", vocab_size(tokenizer))
    served, manifest = served_app(tmp_path / "served", model)
    assert manifest.processing.preprocess.length_groups == 8
    served.session = recorder = RecordingSession(served.session)

    answer = np.array(served.predict({"text": TEXTS})["embedding"])

    np.testing.assert_allclose(answer, text_reference(model, tokenizer, TEXTS), atol=1e-6)
    assert [rows for rows, _ in recorder.widths] == [8, 8, 5]
    widths = [width for _, width in recorder.widths]
    assert widths == sorted(widths) and widths[0] < widths[-1]  # short rows do not pay for the longest


def test_a_request_of_one_group_or_fewer_rows_runs_as_one_batch(tokenizer, tmp_path: Path) -> None:
    model = text_encoder(tmp_path / "model.onnx", vocab_size(tokenizer))
    served, _ = served_app(tmp_path / "served", model)
    served.session = recorder = RecordingSession(served.session)
    served.predict({"text": TEXTS[:8]})
    assert len(recorder.widths) == 1


def test_outputs_with_a_sequence_axis_run_as_one_batch(tokenizer, tmp_path: Path) -> None:
    nodes, inits = _encoder_nodes(vocab_size(tokenizer), np.random.default_rng(0))
    graph = helper.make_graph(nodes, "token_vectors", _token_inputs(),
                              [helper.make_tensor_value_info("masked", TensorProto.FLOAT, ["batch", "sequence", DIM])],
                              inits)
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "model.onnx")
    _, manifest = served_app(tmp_path / "served", model)
    assert manifest.processing.preprocess.length_groups is None


def test_a_model_whose_answer_moves_with_padding_runs_as_one_batch(tokenizer, tmp_path: Path) -> None:
    """It takes an attention mask but averages over every position, padding included: the
    build's check on the model itself sees grouped rows answer differently."""
    nodes, inits = _encoder_nodes(vocab_size(tokenizer), np.random.default_rng(0))
    nodes.append(helper.make_node("ReduceMean", ["x", "axis1"], ["embedding"], keepdims=0))
    graph = helper.make_graph(nodes, "unmasked_mean", _token_inputs(),
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])], inits)
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "model.onnx")
    served, manifest = served_app(tmp_path / "served", model)
    assert manifest.processing.preprocess.length_groups is None
    served.session = recorder = RecordingSession(served.session)
    served.predict({"text": TEXTS})
    assert len(recorder.widths) == 1
