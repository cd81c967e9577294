"""What one request may make the service build, decided before it is parsed.

`json.loads` (and BentoML's parser) turn every JSON value into a Python object: 3.8 MiB of
`[0],` rows become a million lists, about 400 MiB, before any row limit can look at them;
100,000 nested brackets exhaust the parser's recursion. So the body is measured first,
with byte-level scans that build no Python object per value (`count_json`), against what
the served signature and the artifact's limits allow (`RequestBudget`):

- nesting: the deepest input's rank plus the protocol's envelope (`{"inputs": [{"data": ...}]}`);
- values (numbers, strings, object keys): `max_rows` rows of every input, plus the envelope;
- arrays and objects: as many as those rows need when nested like their shape.

An input with a free axis after the first (a sequence length, an image size) has no
element bound from its signature: then only the body size bounds its values (a JSON value
takes at least 2 bytes), and the nesting and row checks still hold. docs/serving.md states
the peak memory a request can cost from these bounds.

Standard library and numpy only: this module ships in every artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .limits import REQUEST_SIZE_OPTION, ROWS_OPTION, BodyTooLarge, RequestLimits, mib
from .validation import RequestError

# `{"inputs": [{"name": ..., "data": <the tensor>}]}` (Open Inference Protocol) puts a
# tensor three levels down; mlpack's `{"inputs": {"<name>": <the tensor>}}` two.
ENVELOPE_DEPTH = 3
# Keys, names, datatypes, shape entries and parameters around each tensor, and its arrays.
ENVELOPE_VALUES = 32
ENVELOPE_CONTAINERS = 8
# A tensor whose rank the model leaves open (or a sequence of them) may nest this deep.
UNKNOWN_RANK = 8
# A limit that holds fewer rows than this is filled by the rows themselves: send binary.
FEW_ROWS = 4
# What one value of a row typically takes in JSON, with its separator: a float as Python
# and numpy's tolist() write it (`0.48627451062202454, `), a small integer or a short word.
TYPICAL_JSON_BYTES = {"f": 21, "default": 5}
# Bodies that are not JSON: files the application decodes itself (checked by size only).
NOT_JSON = ("multipart/", "image/")
# What one request can cost a worker at most, in bytes (docs/serving.md states the bound;
# tests/test_request_budget.py checks the object costs with tracemalloc, and
# tests/test_hostile_clients.py the whole bound on a served Bento's resident memory):
BODY_COPIES = 4  # the server's buffers, the guard's pieces and the body they join into, a parser's copy
VALUE_BYTES = 112  # a number, string or key as a Python object, its list slot or dict entry, its array element
CONTAINER_BYTES = 200  # a list or dict (a small dict is the costliest)
OBJECT_BYTES_PER_JSON_BYTE = 32  # whatever the JSON: `{},` (three bytes) as an empty dict is the worst
FIXED_BYTES = 8 * 2**20  # the scan's passes, the reply, the framework's objects for one request
_SCAN_CHUNK = 1 << 18  # bytes per numpy pass: the scan's own arrays stay under 4 MiB

_QUOTE, _COMMA, _COLON = ord('"'), ord(","), ord(":")
_STEP = np.zeros(256, np.int8)  # +1 opens an array or object, -1 closes one
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


@dataclass(frozen=True)
class JsonCounts:
    """Upper bounds of what parsing a body would build (exact for valid JSON but `values`)."""

    values: int  # numbers, strings, literals and object keys: at most separators + 1
    containers: int  # arrays and objects
    depth: int  # the deepest nesting


def count_json(body: bytes) -> JsonCounts:
    """Count a JSON body's structure outside its strings, 256 KiB at a time (C loops: bytes
    methods and numpy, no Python object per value, a few MiB of memory).

    In each piece escapes are dropped first (a piece never ends inside one), so every quote
    left opens or closes a string; a running count of quotes tells which bytes are inside
    one. Invalid JSON gets counts too: whatever a parser builds before it fails on it is
    bounded by them."""
    separators = containers = level = deepest = 0
    inside = np.uint8(0)  # 1 while a string is open at the end of the previous piece
    start = 0
    while start < len(body):
        piece = body[start:start + _SCAN_CHUNK]
        if (len(piece) - len(piece.rstrip(b"\\"))) % 2:  # an odd run of backslashes escapes the next byte
            piece = body[start:start + len(piece) + 1]
        start += len(piece)
        if b"\\" in piece:
            piece = piece.replace(b"\\\\", b"").replace(b'\\"', b"")  # what is left of \uXXXX is harmless
        data = np.frombuffer(piece, np.uint8)
        quotes = np.cumsum(data == _QUOTE, dtype=np.uint8)  # wraps at 256: only its parity matters
        outside = data[((quotes + inside) & 1) == 0]
        inside = (quotes[-1] + inside) & 1 if quotes.size else inside
        separators += int(np.count_nonzero(outside == _COMMA)) + int(np.count_nonzero(outside == _COLON))
        steps = _STEP[outside]
        steps = steps[steps != 0]
        if steps.size:
            levels = np.cumsum(steps, dtype=np.int32) + level
            containers += int(np.count_nonzero(steps > 0))
            deepest = max(deepest, int(levels.max()))
            level = int(levels[-1])
    return JsonCounts(values=separators + 1, containers=containers, depth=deepest)


def json_part(body: bytes, content_type: str, header_length: str | None) -> bytes | None:
    """The part of a request body that is parsed as JSON: all of it, the JSON header of an
    Open Inference Protocol request with binary tensors (`header_length`: its
    Inference-Header-Content-Length), or None for an upload (multipart, an image)."""
    if content_type.split(";")[0].strip().lower().startswith(NOT_JSON):
        return None
    if header_length is None:
        return body
    try:
        return body[:max(0, int(header_length))]
    except ValueError:
        return b""  # the protocol answers the bad header itself


def served_inputs(config: Any) -> list[Mapping[str, Any]]:
    """A RuntimeConfig's served inputs (its processing's when it has any), without loading
    the model or the processing."""
    return list((config.processing or {}).get("inputs") or config.inputs)


def _rank(spec: Mapping[str, Any]) -> int:
    dtype = str(spec["dtype"])
    if dtype.startswith(("seq(", "map(")):  # lists and objects, and maybe a tensor inside
        return dtype.count("seq(") + dtype.count("map(") + (UNKNOWN_RANK if "tensor(" in dtype else 0)
    shape = spec.get("shape")
    return UNKNOWN_RANK if shape is None else len(shape)


def _dims(spec: Mapping[str, Any], max_rows: int) -> list[int | None] | None:
    """The input's largest dimensions a request may give: `max_rows` for a free first axis,
    None for another free axis; None when the input is not a tensor of known rank."""
    shape = spec.get("shape")
    if shape is None or str(spec["dtype"]).startswith(("seq(", "map(")):
        return None
    return [d if isinstance(d, int) else (max_rows if i == 0 else None) for i, d in enumerate(shape)]


def _product(dims: Sequence[int | None]) -> int | None:
    return None if any(d is None for d in dims) else math.prod(dims)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RequestBudget:
    """The most a request may hold for this signature and these limits, and the checks."""

    limits: RequestLimits
    max_depth: int
    max_values: int | None  # None: only the body size bounds them (a free inner axis)
    max_containers: int | None
    row_bytes: int | None  # one row of every input as typical JSON; None when unbounded
    binary_routes: tuple[str, ...] = ()  # where the same tensors travel compactly, for the 413

    @classmethod
    def of(cls, limits: RequestLimits, specs: Sequence[Mapping[str, Any]],
           binary_routes: Sequence[str] = ()) -> RequestBudget:
        values: int | None = 0
        containers: int | None = 0
        row: int | None = 0  # typical JSON bytes of one row
        for spec in specs:
            dims = _dims(spec, limits.max_rows)
            if dims is None:
                values = containers = row = None
                break
            count = _product(dims)
            # Nested like its shape, a tensor of rank r has 1 + d0 + d0*d1 + ... arrays.
            nested = [_product(dims[:i]) for i in range(len(dims))]
            values = None if values is None or count is None else values + count
            containers = None if containers is None or None in nested else containers + sum(nested)  # type: ignore[arg-type]
            per_row = _product(dims[1:]) if dims else 1
            typical = TYPICAL_JSON_BYTES["f" if np.dtype(spec["dtype"]).kind == "f" else "default"]
            row = None if row is None or per_row is None else row + per_row * typical
        tensors = len(specs) + 1  # and the outputs a request may name: at most as many again
        return cls(
            limits=limits,
            max_depth=ENVELOPE_DEPTH + max([1, *(_rank(s) for s in specs)]),
            max_values=None if values is None else values + 2 * ENVELOPE_VALUES * tensors,
            max_containers=None if containers is None else containers + 2 * ENVELOPE_CONTAINERS * tensors,
            row_bytes=row or None,
            binary_routes=tuple(binary_routes),
        )

    @classmethod
    def for_runtime(cls, config: Any, binary_routes: Sequence[str] = ()) -> RequestBudget:
        """The budget of a RuntimeConfig: its limits and served inputs (its processing's
        when it has any), without loading the model."""
        return cls.of(config.limits, served_inputs(config), binary_routes)

    def peak_bytes(self) -> int:
        """The most memory one request can cost: the body's copies, and the Python objects a
        parser builds from it, bounded by the signature's values and arrays, or, where the
        signature leaves an axis free, by the body's size."""
        size = self.limits.max_request_bytes
        objects = OBJECT_BYTES_PER_JSON_BYTE * size
        if self.max_values is not None and self.max_containers is not None:
            objects = min(objects, VALUE_BYTES * self.max_values + CONTAINER_BYTES * self.max_containers)
        return BODY_COPIES * size + objects + FIXED_BYTES

    def check_json(self, body: bytes) -> None:
        """Raise RequestError (HTTP 400) for a body that parsing would make too deep or too big."""
        counts = count_json(body)
        if counts.depth > self.max_depth:
            raise RequestError(
                f"the request's JSON is nested {counts.depth:,} levels deep, and this model's inputs need at most "
                f"{self.max_depth}: send each input as nested lists shaped like it (or flat, with its shape)")
        rows = f"{self.limits.max_rows:,} rows"
        if self.max_values is not None and counts.values > self.max_values:
            raise RequestError(
                f"the request holds up to {counts.values:,} values, more than {rows} of this model's inputs "
                f"hold ({self.max_values:,} with the protocol's own): {self._fewer_rows()}")
        if self.max_containers is not None and counts.containers > self.max_containers:
            raise RequestError(
                f"the request holds {counts.containers:,} arrays and objects, more than {rows} of this model's "
                f"inputs need ({self.max_containers:,}): {self._fewer_rows()}")

    def _fewer_rows(self) -> str:
        return f"split the request, or rebuild the artifact with `mlpack build {ROWS_OPTION} N`"

    def body_problem(self, size: int, *, complete: bool = True) -> BodyTooLarge | None:
        """The 413 for a body of `size` bytes (`complete=False`: received so far), or None.

        It names the routes that carry the same tensors as binary where the entry point has
        them; first, when a few rows of typical JSON numbers already fill the limit, since
        then "send fewer rows" is no advice."""
        over = self.limits.body_over(size, complete=complete)
        if over is None:
            return None
        rebuild = f"rebuild the artifact with `mlpack build {REQUEST_SIZE_OPTION} N`"
        if not self.binary_routes:
            return BodyTooLarge(f"{over}: send fewer rows per request, or {rebuild}")
        binary = f"send the tensors as binary ({' or '.join(self.binary_routes)})"
        rows = self.limits.max_request_bytes // self.row_bytes if self.row_bytes else None
        if rows is not None and rows < FEW_ROWS:
            held = "not one row" if rows == 0 else f"about {rows} row{'s' if rows > 1 else ''}"
            return BodyTooLarge(f"{over}, which holds {held} of this model's inputs as JSON: {binary}, or {rebuild}")
        return BodyTooLarge(f"{over}: send fewer rows per request, {binary}, or {rebuild}")

    def check_npz(self, archive: Any) -> None:
        """Raise RequestError (HTTP 400) for an .npz (np.load's NpzFile) whose arrays would
        take more memory than a request of the limit's size, or than `max_rows` rows as
        float64, from the arrays' headers, before any is decompressed."""
        allowed = max(self.limits.max_request_bytes, 8 * (self.max_values or 0))
        total = 0
        for info in archive.zip.infolist():
            with archive.zip.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                except ValueError:
                    raise RequestError(f"{info.filename!r} in the .npz is not a numpy array") from None
            total += math.prod(shape) * dtype.itemsize
        if total > allowed:
            raise RequestError(
                f"the .npz's arrays take {mib(total)} unpacked, more than this service takes per request "
                f"({mib(allowed)}): split the request, or rebuild the artifact with `mlpack build {ROWS_OPTION} N`")
