"""Operators that need a C library locale, and the rewrite that makes them load everywhere.

onnxruntime builds `StringNormalizer` (skl2onnx emits it for every TfidfVectorizer and
CountVectorizer) with `std::locale(locale)`, the node's `locale` attribute, by default
`en_US.UTF-8`. Slim Debian images, distroless images and AWS Lambda ship no such locale
(only C, C.UTF-8 and POSIX), so the session fails to load there. mlpack sets the
attribute to `C.UTF-8`, which glibc has on all of them: its case mapping is Unicode's
simple one (Ü -> ü, Σ -> σ), as in any UTF-8 locale, so case folding of non-ASCII text
still works; only language rules of a named locale (Turkish dotted I) are lost. See
docs/model-shapes.md.
"""

from __future__ import annotations

from typing import Iterator

import onnx
from pydantic import BaseModel

PORTABLE_LOCALE = "C.UTF-8"
# Locales glibc always has (C.UTF-8 on Debian, Ubuntu, Amazon Linux 2023 and distroless).
AVAILABLE_EVERYWHERE = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8"})
ONNXRUNTIME_DEFAULT = "en_US.UTF-8"  # what onnxruntime uses when the attribute is absent (Linux)
LOCALE_OPS = frozenset({"StringNormalizer"})  # onnxruntime's only kernel that takes a locale


class LocaleNode(BaseModel):
    """A node that needs a locale: what the model asks for and what mlpack ships."""

    node: str
    op_type: str
    locale: str  # as the model asks (onnxruntime's default when the attribute is absent)
    declared: bool  # False: the attribute is absent and onnxruntime's default applies

    @property
    def rewritten(self) -> bool:
        return self.locale not in AVAILABLE_EVERYWHERE

    def action(self) -> str:
        """What the build does about it, in words."""
        asked = self.locale if self.declared else f"{self.locale}, onnxruntime's default"
        if not self.rewritten:
            return f"locale {asked}: kept, it exists everywhere"
        return f"locale {asked}: set to {PORTABLE_LOCALE}, which every target has"


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, those inside If/Loop/Scan bodies too."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _nodes(sub)


def _locale_attribute(node: onnx.NodeProto) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == "locale"), None)


def _locale_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    for node in _nodes(model.graph):
        if node.op_type in LOCALE_OPS and node.domain in ("", "ai.onnx"):
            yield node


def locale_nodes(model: onnx.ModelProto) -> list[LocaleNode]:
    """The model's locale-dependent nodes, with the locale each one asks for."""
    found = []
    for i, node in enumerate(_locale_nodes(model)):
        attribute = _locale_attribute(node)
        locale = attribute.s.decode() if attribute is not None and attribute.s else ONNXRUNTIME_DEFAULT
        found.append(LocaleNode(node=node.name or f"{node.op_type}_{i}", op_type=node.op_type,
                                locale=locale, declared=attribute is not None and bool(attribute.s)))
    return found


def make_portable(model: onnx.ModelProto) -> list[LocaleNode]:
    """Set every locale that some target lacks to C.UTF-8, in place; returns the nodes changed."""
    changed = []
    for node, found in zip(_locale_nodes(model), locale_nodes(model)):
        if not found.rewritten:
            continue
        attribute = _locale_attribute(node)
        if attribute is None:
            node.attribute.append(onnx.helper.make_attribute("locale", PORTABLE_LOCALE))
        else:
            attribute.s = PORTABLE_LOCALE.encode()
        changed.append(found)
    return changed
