"""What one request may make the service build, measured before it is parsed
(mlpack_runtime.budget): the byte-level count agrees with what json.loads builds, the
signature and the limits decide the budget, the costs docs/serving.md states hold for the
costliest JSON there is, and a 413 names the routes that carry tensors as binary."""

from __future__ import annotations

import gc
import io
import json
import random
import tracemalloc

import numpy as np
import pytest

from mlpack.runtime import RequestError, budget
from mlpack.runtime.budget import RequestBudget, count_json, json_part
from mlpack.runtime.limits import RequestLimits
from mlpack.runtime.validation import read_json

PIXELS = [{"name": "pixels", "dtype": "float32", "shape": ["N", 64]}]  # the demo's signature
TOKENS = [{"name": "ids", "dtype": "int64", "shape": ["batch", "sequence"]}]
IMAGE = [{"name": "image", "dtype": "float32", "shape": [1, 3, 320, 480]}]
ROUTES = ("POST /predict_npz with an .npz file", "POST /v2/models/m/infer with binary tensor data")
MILLION_ROWS = b'{"inputs": {"pixels": [' + b",".join([b"[0]"] * 1_000_000) + b"]}}"  # 3.8 MiB


def random_json(rng: random.Random, depth: int = 0):
    """Values whose strings hold every character that matters to the count: quotes,
    backslashes (escaping quotes and themselves), brackets, commas and colons."""
    pick = rng.random()
    if depth > 6 or pick < 0.3:
        return rng.choice([0, 1.5, -2e10, True, None, "", 'a"b', "\\", "[{,:}]", '\\"', "x\\\\", "é\u2028", 10**20])
    if pick < 0.65:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["k", "a,b", '"', "\\", "[:"]) + str(i): random_json(rng, depth + 1)
            for i in range(rng.randint(0, 4))}


def structure(value, depth: int = 1) -> tuple[int, int, int]:
    """(values and keys, arrays and objects, deepest nesting) as json.loads builds them."""
    if isinstance(value, (list, dict)):
        items = list(value.values()) if isinstance(value, dict) else value
        inner = [structure(item, depth + 1) for item in items]
        keys = len(value) if isinstance(value, dict) else 0
        return (keys + sum(i[0] for i in inner), 1 + sum(i[1] for i in inner), max([depth, *(i[2] for i in inner)]))
    return 1, 0, depth - 1


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1 << 18])
def test_the_count_agrees_with_what_json_builds_whatever_the_strings_hold(monkeypatch, piece: int) -> None:
    monkeypatch.setattr(budget, "_SCAN_CHUNK", piece)  # escapes and strings across every piece boundary
    rng = random.Random(piece)
    for _ in range(300):
        value = random_json(rng)
        counts = count_json(json.dumps(value, ensure_ascii=rng.random() < 0.5).encode())
        values, containers, depth = structure(value)
        assert (counts.containers, counts.depth) == (containers, depth)
        assert counts.values >= values


def test_the_count_builds_no_object_per_value() -> None:
    tracemalloc.start()
    counts = count_json(MILLION_ROWS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (counts.containers, counts.depth) == (1_000_003, 4)
    assert peak < 4 * 2**20  # json.loads builds about 100 MiB of lists from these 3.8 MiB


def test_the_budget_follows_the_signature_and_the_limits() -> None:
    demo = RequestBudget.of(RequestLimits(max_rows=1024), PIXELS)
    # {"inputs": [{"data": <2 levels>}]}; 1024 rows of 64; 1 + 1024 arrays, plus the protocol's own
    assert demo.max_depth == 5
    assert demo.max_values == 1024 * 64 + 2 * budget.ENVELOPE_VALUES * 2
    assert demo.max_containers == 1 + 1024 + 2 * budget.ENVELOPE_CONTAINERS * 2
    tokens = RequestBudget.of(RequestLimits(max_rows=8), TOKENS)
    assert tokens.max_values is None  # a free sequence axis: only the body size bounds the values
    assert tokens.max_containers == 1 + 8 + 2 * budget.ENVELOPE_CONTAINERS * 2  # the rows still do
    assert RequestBudget.of(RequestLimits(), IMAGE).max_values == 3 * 320 * 480 + 2 * budget.ENVELOPE_VALUES * 2


def test_a_million_rows_and_deep_nesting_are_refused_before_parsing() -> None:
    demo = RequestBudget.of(RequestLimits(), PIXELS)
    with pytest.raises(RequestError, match=r"^the request holds up to 1,000,002 values, more than 1,024 rows of this "
                                           r"model's inputs hold \(65,664 .*`mlpack build --max-rows N`$"):
        demo.check_json(MILLION_ROWS)
    with pytest.raises(RequestError, match=r"^the request's JSON is nested 100,000 levels deep, and this model's "
                                           r"inputs need at most 5"):
        demo.check_json(b"[" * 100_000 + b"]" * 100_000)
    tokens = RequestBudget.of(RequestLimits(max_rows=1024), TOKENS)
    with pytest.raises(RequestError, match=r"^the request holds 1,000,003 arrays and objects, more than 1,024 rows"):
        tokens.check_json(MILLION_ROWS.replace(b"pixels", b"ids"))
    demo.check_json(json.dumps({"inputs": {"pixels": np.zeros((1024, 64)).tolist()}}).encode())
    demo.check_json(json.dumps({"inputs": [{"name": "pixels", "shape": [1024, 64], "datatype": "FP32",
                                            "data": np.zeros(1024 * 64).tolist()}]}).encode())


# The costliest JSON per byte, and per value or array: what the stated bound must cover.
WORST = {
    "empty objects": "[" + ",".join(["{}"] * 100_000) + "]",
    "one-key objects": "[" + ",".join(['{"a":0.5}'] * 100_000) + "]",
    "one-element arrays": "[" + ",".join(["[0]"] * 100_000) + "]",
    "unique keys": "{" + ",".join(f'"k{i}":0' for i in range(100_000)) + "}",
    "unique strings": "[" + ",".join(f'"s{i}"' for i in range(100_000)) + "]",
    "floats": "[" + ",".join(["1e1"] * 100_000) + "]",
    "ints past the cache": "[" + ",".join(["-6"] * 100_000) + "]",
}


@pytest.mark.parametrize("name", WORST)
def test_what_json_builds_stays_within_the_stated_costs(name: str) -> None:
    text = WORST[name].encode()
    counts = count_json(text)
    gc.collect()
    tracemalloc.start()
    parsed = json.loads(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del parsed
    assert peak <= budget.OBJECT_BYTES_PER_JSON_BYTE * len(text)
    assert peak <= budget.VALUE_BYTES * counts.values + budget.CONTAINER_BYTES * counts.containers


def test_the_peak_a_request_can_cost_is_a_function_of_the_limits() -> None:
    mib = 2**20
    demo = RequestBudget.of(RequestLimits(max_request_bytes=8 * mib), PIXELS)
    objects = budget.VALUE_BYTES * demo.max_values + budget.CONTAINER_BYTES * demo.max_containers
    assert demo.peak_bytes() == budget.BODY_COPIES * 8 * mib + objects + budget.FIXED_BYTES
    # A free inner axis: the body's size bounds the objects.
    tokens = RequestBudget.of(RequestLimits(max_request_bytes=mib), TOKENS)
    assert tokens.peak_bytes() == (budget.BODY_COPIES + budget.OBJECT_BYTES_PER_JSON_BYTE) * mib + budget.FIXED_BYTES
    assert RequestBudget.of(RequestLimits(max_request_bytes=mib, max_rows=2), PIXELS).peak_bytes() < demo.peak_bytes()


def test_a_413_for_a_few_rows_names_the_binary_routes_first() -> None:
    image = np.random.default_rng(0).random((1, 3, 320, 480), dtype=np.float32)
    size = len(json.dumps({"inputs": {"image": image.tolist()}}))  # one image as JSON: 8.9 MiB
    assert str(RequestBudget.of(RequestLimits(), IMAGE, ROUTES).body_problem(size)) == (
        f"the request body ({size / 2**20:.1f} MiB) is over this service's limit of 8 MiB, which holds not one row of this "
        "model's inputs as JSON: send the tensors as binary (POST /predict_npz with an .npz file or "
        "POST /v2/models/m/infer with binary tensor data), or rebuild the artifact with `mlpack build --max-request-mb N`")
    many = str(RequestBudget.of(RequestLimits(), PIXELS, ROUTES).body_problem(9 * 2**20))
    assert many.startswith("the request body (9 MiB) is over this service's limit of 8 MiB: send fewer rows per "
                           "request, send the tensors as binary (POST /predict_npz")
    assert str(RequestBudget.of(RequestLimits(), PIXELS).body_problem(9 * 2**20)).endswith(
        ": send fewer rows per request, or rebuild the artifact with `mlpack build --max-request-mb N`")
    assert RequestBudget.of(RequestLimits(), PIXELS, ROUTES).body_problem(8 * 2**20) is None


def test_an_npz_that_unpacks_past_the_limits_is_refused_from_its_headers() -> None:
    bomb = io.BytesIO()
    np.savez_compressed(bomb, pixels=np.zeros((200_000, 64), np.float32))  # 49 MiB in 50 KiB
    bomb.seek(0)
    demo = RequestBudget.of(RequestLimits(), PIXELS)
    with np.load(bomb, allow_pickle=False) as archive:
        with pytest.raises(RequestError, match=r"^the .npz's arrays take 48.8 MiB unpacked, more than this service"):
            demo.check_npz(archive)
    fine = io.BytesIO()
    np.savez(fine, pixels=np.zeros((1024, 64), np.float32))
    fine.seek(0)
    with np.load(fine, allow_pickle=False) as archive:
        demo.check_npz(archive)


def test_only_json_is_measured_and_only_the_json_header_of_binary_tensors() -> None:
    assert json_part(b"--boundary", "multipart/form-data; boundary=x", None) is None
    assert json_part(b"\x89PNG", "image/png", None) is None
    assert json_part(b'{"inputs": []}BINARY', "application/octet-stream", "14") == b'{"inputs": []}'
    assert json_part(b"{}", "", "not a number") == b""  # the protocol answers the bad header
    assert json_part(b"{}", "application/json", None) == b"{}"


@pytest.mark.parametrize("body, message", [
    (b"[" * 100_000, "the request body is nested too deep to read: send arrays nested like the inputs' shapes"),
    (b"[" + b"1" * 5001 + b"]", "the request body holds an integer of more than 4,300 digits, which no tensor can hold"),
    (b'{"inputs": }', "the request body is not valid JSON: Expecting value at line 1 column 12"),
    (b'"\xff"', "the request body is not UTF-8 text"),
])
def test_every_parser_failure_is_a_request_error(body: bytes, message: str) -> None:
    with pytest.raises(RequestError) as failure:
        read_json(body)
    assert str(failure.value) == message
