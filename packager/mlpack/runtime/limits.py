"""Requests that cannot hurt the service: the body size, the rows and the numbers it accepts.

The limits come from the target's `[serving]` table (or the `mlpack build` options that
override it) through runtime.json, so an artifact carries the limits it was built with.
The same checks run in the Bento service and in the Lambda handler:

- a body over `max_request_bytes` is refused with HTTP 413 before it is read or parsed
  (asgi.RequestGuard for ASGI servers; the Lambda handler checks the event's body), and
  one whose JSON would build more than the signature's rows allow with HTTP 400 before it
  is parsed (budget.py);
- a worker reads and answers at most `max_concurrency` requests with a body at once; the
  next wait, unread (asgi.RequestGuard): so a worker's memory is bounded by the limits;
- an input with more than `max_rows` rows is refused with HTTP 400 naming the input;
- NaN or infinite values in a float input are refused with HTTP 400 naming the input,
  unless the artifact was built with `--allow-non-finite`.

Standard library and numpy only: this module ships in every artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .validation import RequestError, parse_inputs

MIB = 2**20
# Defaults when runtime.json has no `limits` (artifacts built before limits existed).
DEFAULT_MAX_REQUEST_BYTES = 8 * MIB
DEFAULT_MAX_ROWS = 1024
DEFAULT_MAX_CONCURRENCY = 8
# The `mlpack build` options that change each limit: the messages tell the caller which.
REQUEST_SIZE_OPTION = "--max-request-mb"
ROWS_OPTION = "--max-rows"
NON_FINITE_OPTION = "--allow-non-finite"


class BodyTooLarge(RequestError):
    """The request body is over the artifact's limit (HTTP 413)."""


def mib(size: int) -> str:
    return f"{size / MIB:.1f}".removesuffix(".0") + " MiB"


@dataclass(frozen=True)
class RequestLimits:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    allow_non_finite: bool = False
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY  # requests with a body one worker holds at once

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> RequestLimits:
        raw = raw or {}
        return cls(
            max_request_bytes=int(raw.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)),
            max_rows=int(raw.get("max_rows", DEFAULT_MAX_ROWS)),
            allow_non_finite=bool(raw.get("allow_non_finite", False)),
            max_concurrency=int(raw.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)),
        )

    def body_over(self, size: int, *, complete: bool = True) -> str | None:
        """What is wrong with a body of `size` bytes (`complete=False`: received so far, its
        length undeclared), without the advice; None when it fits."""
        if size <= self.max_request_bytes:
            return None
        limit, measured = mib(self.max_request_bytes), mib(size)
        if measured == limit:  # just over: only bytes tell them apart
            limit, measured = f"{self.max_request_bytes:,} bytes", f"{size:,} bytes"
        measured = f" ({measured})" if complete else ""
        return f"the request body{measured} is over this service's limit of {limit}"

    def body_problem(self, size: int, *, complete: bool = True) -> BodyTooLarge | None:
        """The 413 error for a body of `size` bytes, or None when it fits (budget.RequestBudget
        words it with the routes that carry tensors as binary, where it knows them)."""
        over = self.body_over(size, complete=complete)
        if over is None:
            return None
        return BodyTooLarge(
            f"{over}: send fewer rows per request, or rebuild the artifact with `mlpack build {REQUEST_SIZE_OPTION} N`")

    def check_body(self, size: int) -> None:
        problem = self.body_problem(size)
        if problem is not None:
            raise problem

    def check_arrays(self, arrays: Mapping[str, np.ndarray], specs: list[Mapping[str, Any]]) -> None:
        """Raise RequestError (HTTP 400) naming the first input over the row limit or holding
        a non-finite number. `arrays` already fit the signature (validation.parse_inputs)."""
        for spec in specs:
            array = arrays.get(spec["name"])
            if not isinstance(array, np.ndarray):  # left out (optional), or a map or sequence input
                continue
            self._check_rows(spec, array)
            if not self.allow_non_finite:
                _check_finite(spec["name"], array)

    def input_parser(self, name: str, specs: list[Mapping[str, Any]]) -> Callable[[Any], np.ndarray]:
        """One input's JSON value to its array, checked as /predict checks it (signature,
        rows, non-finite numbers), as a validator: for routes whose framework parses each
        request itself (BentoML's /predict_batch, before batching; BentoML's own conversion
        would reshape a row of the wrong length into other rows)."""
        spec = next(s for s in specs if s["name"] == name)

        def parse(value: Any) -> np.ndarray:
            arrays = parse_inputs({name: value}, [spec])
            self.check_arrays(arrays, [spec])
            return arrays[name]

        return parse

    def _check_rows(self, spec: Mapping[str, Any], array: np.ndarray) -> None:
        shape = spec.get("shape")
        batched = shape is None or (len(shape) > 0 and not isinstance(shape[0], int))
        if batched and array.ndim > 0 and array.shape[0] > self.max_rows:
            raise RequestError(
                f"input {spec['name']!r} has {array.shape[0]} rows, over this service's limit of "
                f"{self.max_rows} rows per request: split the request, or rebuild the artifact with "
                f"`mlpack build {ROWS_OPTION} N`", input=spec["name"]
            )


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind != "f" or array.size == 0:
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    where = [int(i) for i in np.argwhere(~finite)[0]]
    value = array[tuple(where)].item()
    raise RequestError(
        f"input {name!r} holds {value} at {where}: send finite numbers, or rebuild the artifact with "
        f"`mlpack build {NON_FINITE_OPTION}` if the model handles them", input=name
    )
