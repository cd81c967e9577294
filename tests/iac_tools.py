"""Validators that need the IaC venv (checkov pins an old boto3, so they live apart from
the main venv). tests/test_iac.py runs this file with that venv's Python:

    python tests/iac_tools.py COMMAND FILE...

Each command prints one JSON document on stdout: {"errors": [...], ...}. Only the
standard library, PyYAML and the tools of the IaC venv are imported here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable


def load_cfn(path: Path) -> dict[str, Any]:
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if matches:
        raise ValueError("; ".join(str(m) for m in matches))
    return json.loads(json.dumps(template, default=str))


def sam_translate(path: Path, out: Path) -> dict[str, Any]:
    """Translate a SAM template to plain CloudFormation locally (aws-sam-translator),
    as `sam deploy` would after `sam package` replaced local code paths by S3 URIs."""
    from samtranslator.translator.transform import transform

    # The translator fills in AWS::Region from the boto session; any region will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    template = load_cfn(path)
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://mlpack-package-bucket/function.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    translated = transform(template, {}, NoManagedPolicies())
    out.write_text(json.dumps(translated, indent=2))
    return {"errors": [], "resources": sorted(r["Type"] for r in translated["Resources"].values())}


def hcl_parse(*paths: Path) -> dict[str, Any]:
    import hcl2

    parsed, errors = {}, []
    for path in paths:
        try:
            with path.open(encoding="utf-8") as fh:
                parsed[str(path)] = hcl2.load(fh)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a finding
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
    return {"errors": errors, "parsed": parsed}


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "sam-translate": lambda src, dst: sam_translate(Path(src), Path(dst)),
    "hcl-parse": lambda *paths: hcl_parse(*map(Path, paths)),
}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    print(json.dumps(COMMANDS[command](*args), default=str))
