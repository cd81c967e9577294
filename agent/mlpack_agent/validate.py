"""What the agent believes of a datagram: its shape, then every value, checked.

A datagram is decoded as the protocol says (protocol.py); anything else is malformed and
refused whole. Then each event's values must be in range (durations 0 to 1 h, sizes and
counts non-negative integers, an error kind from a short alphabet, class names short and
printable); an
event that is not is refused alone, and the others are recorded. The datagram's own
fields (`pid`, `dropped`, `execution_provider`, `drift`, `capture`) are checked the same
way; one that fails is refused and the datagram's events still count. Drift counts are
checked here for shape (a profile id, non-negative integer counts, none above the rows);
drift.py checks them against the profile the agent was configured with. `labels` is never read: the agent
labels what it exports from its own configuration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .protocol import EVENT_FIELDS, EXECUTION_PROVIDER_PATTERN, VERSION

# Upper bounds of what a real request can report; beyond them a value is refused.
MAX_DURATION_MS = 3_600_000.0  # one hour: longer than any HTTP or Lambda timeout
MAX_ITEMS = 2**31  # batch size
MAX_INPUT_BYTES = 2**40
MAX_CLASSES = 1024  # predicted classes in one event
MAX_COUNTER = 2**53  # `dropped`: exact in a float, as every exporter handles it
MAX_PID = 2**22  # the kernel's pid_max ceiling
MAX_NAME_CHARS = 64  # error kinds and class names
MAX_DRIFT_SLOTS = 4096  # bins of all features of a profile together (mlpack writes fewer)
MAX_CAPTURE_KEYS = 64
_PROFILE_ID = re.compile(r"[0-9a-f]{16}").fullmatch
_KIND = re.compile(r"[A-Za-z0-9_.:/-]{1,%d}" % MAX_NAME_CHARS).fullmatch
_PROVIDER = re.compile(EXECUTION_PROVIDER_PATTERN).fullmatch
_N_FIELDS = len(EVENT_FIELDS)


class Malformed(ValueError):
    """Not a datagram of the protocol: refused whole."""


@dataclass
class Checked:
    events: list[list[Any]] = field(default_factory=list)
    invalid_events: int = 0
    pid: int = 0  # the client's own pid, as it wrote it: a bookkeeping key, not an identity
    dropped: int | None = None  # the client's running count of events it lost; None: absent
    execution_provider: str | None = None
    invalid_fields: int = 0  # datagram fields refused (pid, dropped, execution_provider, drift, capture)
    drift: dict[str, Any] | None = None  # {"profile", "rows", "outside", "counts"}, shape checked
    capture: dict[str, Any] | None = None  # one sampled request's inputs, by input name


def check(data: bytes) -> Checked:
    try:
        datagram = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        raise Malformed("not JSON") from None
    if type(datagram) is not dict or datagram.get("v") != VERSION:
        raise Malformed("not a version 1 datagram")
    events = datagram.get("events")
    if type(events) is not list:
        raise Malformed("no event list")
    checked = Checked()
    valid = checked.events
    for event in events:
        if _valid_event(event):
            valid.append(event)
        else:
            checked.invalid_events += 1
    pid = datagram.get("pid")
    if _is_int(pid, 0, MAX_PID):
        checked.pid = pid
    elif pid is not None:
        checked.invalid_fields += 1
    dropped = datagram.get("dropped")
    if _is_int(dropped, 0, MAX_COUNTER):
        checked.dropped = dropped
    elif dropped is not None:
        checked.invalid_fields += 1
    provider = datagram.get("execution_provider")
    if type(provider) is str and _PROVIDER(provider):
        checked.execution_provider = provider
    elif provider is not None:
        checked.invalid_fields += 1
    drift = datagram.get("drift")
    if _valid_drift(drift):
        checked.drift = drift
    elif drift is not None:
        checked.invalid_fields += 1
    capture = datagram.get("capture")
    if type(capture) is dict and 0 < len(capture) <= MAX_CAPTURE_KEYS and all(
            type(k) is str and 0 < len(k) <= MAX_NAME_CHARS and k.isprintable() for k in capture):
        checked.capture = capture
    elif capture is not None:
        checked.invalid_fields += 1
    return checked


def _valid_drift(drift: Any) -> bool:
    if type(drift) is not dict or type(drift.get("profile")) is not str or not _PROFILE_ID(drift["profile"]):
        return False
    rows, outside, counts = drift.get("rows"), drift.get("outside"), drift.get("counts")
    if not (_is_int(rows, 1, MAX_COUNTER) and _is_int(outside, 0, rows + 1)):
        return False
    if type(counts) is not list or not 0 < len(counts) <= MAX_DRIFT_SLOTS:
        return False
    return all(type(c) is int and 0 <= c <= rows for c in counts)


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value < high


def _is_duration(value: Any) -> bool:
    # type() excludes bool; NaN fails both comparisons, infinities the upper one.
    return value is None or (type(value) in (int, float) and 0 <= value <= MAX_DURATION_MS)


def _valid_event(event: Any) -> bool:
    if type(event) is not list or len(event) != _N_FIELDS:
        return False
    model_ms, total_ms, batch_size, input_bytes, ok, error_kind, predicted, norm = event
    return (
        _is_duration(model_ms) and _is_duration(total_ms)
        and _is_int(batch_size, 0, MAX_ITEMS) and _is_int(input_bytes, 0, MAX_INPUT_BYTES)
        and type(ok) is bool
        and (error_kind is None or (type(error_kind) is str and _KIND(error_kind) is not None))
        and (predicted is None or _valid_classes(predicted))
        and (norm is None or (type(norm) in (int, float) and 0 <= norm < float("inf")))
    )


def _valid_classes(predicted: Any) -> bool:
    if type(predicted) is not list or len(predicted) > MAX_CLASSES:
        return False
    for value in predicted:
        kind = type(value)
        if kind is int:
            if not -MAX_ITEMS <= value < MAX_ITEMS:
                return False
        elif kind is not str or not 0 < len(value) <= MAX_NAME_CHARS or not value.isprintable():
            return False
    return True
