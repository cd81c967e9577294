"""Waves and failure budgets for an Ansible rollout (pure).

mlpack runs the playbook once per wave and decides between waves, because Ansible's own
`serial` + `max_fail_percentage` leaves unreachable hosts out of the count: an
unreachable device in a later wave would never stop the rollout. Here every device of a
wave ends updated, unchanged, rolled back, refused, failed or unreachable, and the
rollout goes on only if none failed and the unreachable ones fit `--max-unreachable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..errors import InputError

# One canary device, then 10%, then half, then everyone left.
DEFAULT_WAVES: tuple[int | str, ...] = (1, "10%", "50%", "100%")


def check_waves(waves: Sequence[int | str]) -> None:
    if not waves:
        raise InputError("--waves is empty", "give wave sizes such as 1,10%,50%,100%")
    for wave in waves:
        text = str(wave)
        number = text[:-1] if text.endswith("%") else text
        if not number.isdigit() or int(number) < 1 or (text.endswith("%") and int(number) > 100):
            raise InputError(f"invalid wave size {text!r}", "use a device count (1) or a share (10%), e.g. 1,10%,50%,100%")


def parse_waves(text: str) -> list[int | str]:
    waves: list[int | str] = [w.strip() if w.strip().endswith("%") else int(w) if w.strip().isdigit() else w.strip()
                              for w in text.split(",") if w.strip()]
    check_waves(waves)
    return waves


def _size(wave: int | str, fleet: int) -> int:
    """A wave's device count: a share of the whole fleet rounds down, but is at least 1."""
    text = str(wave)
    if text.endswith("%"):
        return int(float(text[:-1]) / 100 * fleet) or 1
    return int(text)


def plan_waves(hosts: Sequence[str], waves: Sequence[int | str]) -> list[list[str]]:
    """The hosts of each wave, in inventory order, as Ansible's `serial` would batch them:
    sizes (counts or shares of the fleet) in turn, the last size repeated until all are in."""
    check_waves(waves)
    left, plan, index = list(hosts), [], 0
    while left:
        size = _size(waves[min(index, len(waves) - 1)], len(hosts))
        plan.append(left[:size])
        left = left[size:]
        index += 1
    return plan


@dataclass(frozen=True)
class UnreachableBudget:
    """How many devices of one wave may be unreachable before the rollout stops."""

    count: int | None = 0  # at most this many per wave
    percent: float | None = None  # or at most this share of the wave (rounded down)

    @classmethod
    def parse(cls, text: str) -> "UnreachableBudget":
        value = text.strip()
        number = value[:-1] if value.endswith("%") else value
        try:
            amount = float(number) if value.endswith("%") else int(number)
        except ValueError:
            amount = -1
        if amount < 0 or (value.endswith("%") and amount > 100):
            raise InputError(f"invalid --max-unreachable {text!r}",
                             "give a device count per wave (0, 2) or a share of the wave (10%)")
        return cls(None, float(amount)) if value.endswith("%") else cls(int(amount), None)

    def allowed(self, wave_size: int) -> int:
        if self.percent is not None:
            return math.floor(self.percent / 100 * wave_size)
        return self.count or 0

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)
