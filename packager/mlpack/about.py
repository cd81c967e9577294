"""`mlpack --version`: this mlpack, and what each target's artifacts will pin.

The figures come from the function a build pins with (`build/plan.py:host_versions`), so
what `--version` prints is what the next build writes into the manifest.
"""

from __future__ import annotations

import platform

from . import __version__
from .build.plan import host_versions, pin_requirements
from .targets import known_targets


def version_text() -> str:
    lines = [f"mlpack {__version__} (python {platform.python_version()})", "ships, per target:"]
    targets = known_targets()
    width = max(len(t.name) for t in targets)
    for target in targets:
        versions = host_versions(target)
        pins = pin_requirements(target, versions)
        # A Bento target's server image carries bentoml too; a Lambda zip only the runtime.
        shipped = pins.server if "bento" in target.builds else pins.runtime
        lines.append(f"  {target.name:<{width}}  python {versions.python}  {'  '.join(shipped)}")
    return "\n".join(lines)
