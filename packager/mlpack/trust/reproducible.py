"""Bit-identical rebuilds: the inputs that decide a build, and the one time it writes.

Everything a build writes is a function of its inputs (the source model, calibration
data, the target as resolved, the versions, the options, mlpack itself), except the
timing measurements, which live only in the report files (report.md, report.json, report.html).
The inputs are recorded in the manifest (`build`), and their digest names the build.

Timestamps the tools write (bento.yaml's creation_time, the SBOM's, the image's layers
and config) come from one value: $SOURCE_DATE_EPOCH when set (the reproducible-builds.org
convention), else a fixed time derived from the inputs' digest, so that the same inputs
always give the same time and no clock reading ever reaches an artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from ..manifest import BuildInputs

SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
_DERIVED_SPAN = 2**28  # derived times fall within 1980..1988: plainly not a clock reading


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and fixed separators: the same data, the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def digest_of(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def source_date_epoch(inputs_digest: str) -> int:
    """$SOURCE_DATE_EPOCH when set, else a fixed time derived from the inputs' digest."""
    value = os.environ.get(SOURCE_DATE_EPOCH, "").strip()
    if value:
        if not value.isdigit():
            raise InputError(f"{SOURCE_DATE_EPOCH}={value!r} is not a number of seconds since 1970",
                             f"set it to an integer (e.g. {SOURCE_DATE_EPOCH}=$(git log -1 --format=%ct)) or unset it")
        return int(value)
    return ZIP_EPOCH + int(inputs_digest[:12], 16) % _DERIVED_SPAN


def timestamp(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def build_inputs(*, source_model_sha256: str, calibration_sha256: str | None, target: Any, versions: Any,
                 options: dict[str, Any], mlpack_version: str) -> "BuildInputs":
    """The manifest's `build` section: the inputs, their digest and the time derived from it."""
    from ..manifest import BuildInputs

    fields = {
        "source_model_sha256": source_model_sha256,
        "calibration_sha256": calibration_sha256,
        "target_sha256": digest_of(target.model_dump(mode="json")),
        "mlpack_version": mlpack_version,
        # build_python ran the build; what ships is decided by the others.
        "versions": versions.model_dump(exclude={"build_python"}),
        "options": options,
    }
    digest = digest_of(fields)
    return BuildInputs(digest=digest, source_date_epoch=source_date_epoch(digest), **fields)


def epoch_of(manifest: Any) -> int:
    """The build's one time: its recorded inputs' (a manifest from before they were recorded:
    derived from the model's sha256)."""
    build = getattr(manifest, "build", None)
    return build.source_date_epoch if build is not None else source_date_epoch(manifest.model.sha256)
