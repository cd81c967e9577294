"""Validators that need the IaC venv (checkov pins an old boto3, so they live apart from
the main venv). tests/iac_support.py runs this file with that venv's Python:

    python tests/iac_tools.py serve      # one JSON request per line: ["COMMAND", "FILE", ...]
    python tests/iac_tools.py COMMAND FILE...   # one command, by hand

Each command prints one JSON document on stdout: {"errors": [...], ...}. `serve` answers
each request line with one such line; tests/iac_support.py keeps one serving process per
pytest worker, since the imports (the Prometheus Operator's pydantic models alone take
seconds) and the vendored CRD schemas then load once, not once per call. Only the
standard library, PyYAML and the tools of the IaC venv are imported here.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
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


# Kinds that are not Kubernetes API objects and have no schema in kubernetes-validate.
NOT_API_OBJECTS = {"Kustomization"}
# Kubernetes versions the manifests must be valid for: an older supported one and the newest.
KUBERNETES_VERSIONS = ("1.30.0", None)


def _crd_model(document: dict[str, Any]) -> Any | None:
    """The pydantic model generated from the Prometheus Operator's published CRD schema."""
    if document.get("apiVersion") != "monitoring.coreos.com/v1":
        return None
    from cloudcoil.models.prometheus_operator import v1

    return getattr(v1, document.get("kind", ""), None)


def _strict_crd_errors(model: Any, document: dict[str, Any]) -> list[str]:
    """Validate against the model, then require that no field was dropped as unknown
    (the models accept extra fields; a round trip shows them)."""
    instance = model.model_validate(document)
    again = instance.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [] if again == document else [f"{document['kind']}: fields not in the CRD schema or changed: "
                                         f"{json.dumps(document, sort_keys=True)} != {json.dumps(again, sort_keys=True)}"]


CRDS = Path(__file__).with_name("crds")


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of every CRD vendored under tests/crds/
    (the engines' own files of a pinned release; sources.json says where each came from)."""
    import gzip

    import yaml

    schemas = {}
    for entry in json.loads((CRDS / "sources.json").read_text()):
        # libyaml's loader where PyYAML has it: KServe's CRD alone is 2 MB of YAML.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for crd in yaml.load_all(gzip.decompress((CRDS / entry["file"]).read_bytes()), Loader=loader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = \
                    version["schema"]["openAPIV3Schema"]
    return schemas


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others: the API
    server prunes unknown fields silently (structural schemas), so a misspelled field would
    vanish on apply; here it is an error. Objects that keep unknown fields stay open."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {k: _closed(v) for k, v in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        closed["additionalProperties"] = False
    return closed


_VALIDATORS: dict[int, Any] = {}


def _crd_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    from openapi_schema_validator import OAS30Validator

    validator = _VALIDATORS.get(id(schema))
    if validator is None:  # one per schema: closing KServe's takes a while
        validator = _VALIDATORS[id(schema)] = OAS30Validator(_closed(schema))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]


def k8s_validate(*paths: Path) -> dict[str, Any]:
    import kubernetes_validate
    import yaml

    errors, validated, skipped = [], [], []
    crds = _crd_schemas()
    for path in paths:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not document:
                continue
            kind = document.get("kind", "?")
            label = f"{path.name}: {kind}/{document.get('metadata', {}).get('name', '?')}"
            if kind in NOT_API_OBJECTS:
                skipped.append(f"{label}: kustomize input, not an API object (built and validated separately)")
                continue
            model = _crd_model(document)
            crd = crds.get((document.get("apiVersion"), kind))
            try:
                if crd is not None:
                    errors += [f"{label}: {e}" for e in _crd_errors(crd, document)]
                elif model is not None:
                    errors += [f"{label}: {e}" for e in _strict_crd_errors(model, document)]
                else:
                    for version in KUBERNETES_VERSIONS:
                        kwargs = {"strict": True}
                        kubernetes_validate.validate(document, version or kubernetes_validate.latest_version(), **kwargs)
                validated.append(label)
            except Exception as exc:  # noqa: BLE001 - every validation failure is a finding
                errors.append(f"{label}: {type(exc).__name__}: {exc}")
    return {"errors": errors, "validated": validated, "skipped": skipped}


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "sam-translate": lambda src, dst: sam_translate(Path(src), Path(dst)),
    "k8s-validate": lambda *paths: k8s_validate(*map(Path, paths)),
}


def serve() -> None:
    """Answer one request line at a time: the result, or {"exception": its traceback}."""
    for line in sys.stdin:
        command, *args = json.loads(line)
        try:
            answer = COMMANDS[command](*args)
        except Exception:  # noqa: BLE001 - reported to the test, which fails with it
            answer = {"exception": traceback.format_exc()}
        print(json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "serve":
        serve()
    else:
        print(json.dumps(COMMANDS[command](*args), default=str))
