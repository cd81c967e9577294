"""The variants by name, and the checks a target file's `[optimize]` table gets against them."""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TypeVar

from pydantic import ValidationError

from .base import Variant
from .config import VariantConfig

REGISTRY: dict[str, type[Variant]] = {}

V = TypeVar("V", bound=type[Variant])


def register(cls: V) -> V:
    if cls.name in REGISTRY:
        raise ValueError(f"two variants are named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


def _unknown(name: str) -> str:
    return f"unknown variant {name!r} (known: {', '.join(sorted(REGISTRY))})"


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def order_problems(names: Sequence[str]) -> list[str]:
    """What is wrong with a target's list of variants: unknown or repeated names, and variants
    listed before what they need or read. Empty when the list is good."""
    problems = []
    for name in dict.fromkeys(names):
        if name not in REGISTRY:
            problems.append(_unknown(name))
        elif names.count(name) > 1:
            problems.append(f"{name} is listed {names.count(name)} times")
    for i, name in enumerate(names):
        variant = REGISTRY.get(name)
        if variant is None:
            continue
        before, after = names[:i], names[i + 1:]
        because = f" ({variant.reads_because})" if variant.reads_because else ""
        unmet = bool(variant.needs_one_of) and not set(variant.needs_one_of) & set(before)
        if unmet:
            problems.append(f"{name} needs {_either(variant.needs_one_of)} listed before it{because}")
        late = [other for other in variant.reads if other in after and not (unmet and other in variant.needs_one_of)]
        if late:
            problems.append(f"{name} reads the outcome of {_either(late)}, so list {'it' if len(late) == 1 else 'them'}"
                            f" before {name}{because}")
    return problems


def pinned_and_read(variants: Sequence[str], pinned_name: str) -> list[str]:
    """Of a target's `variants`, in their order, the pinned one and every one it reads
    (`Variant.reads`), however indirectly; none for float."""
    wanted: set[str] = set()
    todo = [pinned_name] if pinned_name in variants else []
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(other for other in REGISTRY[name].reads if other in variants)
    return [name for name in variants if name in wanted]


def variant_config(name: str, table: Mapping[str, Any], defaults: Mapping[str, Any]) -> VariantConfig:
    """A variant's typed config: its own defaults, the target's shared `defaults` for the fields it
    has (weight_type), then its `[optimize.config.NAME]` table. Raises pydantic's ValidationError."""
    config = REGISTRY[name].Config
    shared = {key: value for key, value in defaults.items() if key in config.model_fields}
    return config.model_validate({**shared, **table})


def config_problems(tables: Mapping[str, Mapping[str, Any]], listed: Sequence[str] | None,
                    defaults: Mapping[str, Any]) -> list[str]:
    """What is wrong with a target's `[optimize.config.*]` tables, each problem named by its key.
    `listed` is the target's variants (None when that list is itself invalid)."""
    problems = []
    for name, table in tables.items():
        if name not in REGISTRY:
            problems.append(f"{name}: {_unknown(name)}")
            continue
        if listed is not None and name not in listed:
            problems.append(f"{name}: configured but not in optimize.variants")
            continue
        try:
            variant_config(name, table, defaults)
        except ValidationError as exc:
            problems += [f"{'.'.join(map(str, (name, *item['loc'])))}: {item['msg']}" for item in exc.errors()]
    return problems


FLOAT_SUMMARY = "the float model, not quantized: the reference every variant is gated against"


def summary(name: str) -> str:
    """What a variant makes, in one line (`mlpack targets --variants`): its module docstring's
    first line, `NAME: what it makes`. `float` is the reference, not a registered variant."""
    if name == "float":
        return FLOAT_SUMMARY
    import sys

    doc = (sys.modules[REGISTRY[name].__module__].__doc__ or "").strip()
    return doc.splitlines()[0].removeprefix(f"{name}: ").rstrip(".") if doc else ""
