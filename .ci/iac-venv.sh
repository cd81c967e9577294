#!/usr/bin/env bash
# Create the separate virtual environment for the IaC validators that tests/test_iac*.py run.
# checkov pins an old boto3, so these tools cannot share the main venv.
#   usage: .ci/iac-venv.sh [VENV]   (default: $MLPACK_IAC_VENV, else .venv-iac)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${MLPACK_IAC_VENV:-.venv-iac}}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import checkov, cfnlint, samtranslator, kubernetes_validate, botocore, cloudcoil.models.prometheus_operator" 2>/dev/null; then
  echo "IaC venv $VENV is ready"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# cloudcoil.models.prometheus_operator: pydantic models generated from the Prometheus
# Operator's CRD schemas (ServiceMonitor, PrometheusRule), which kubernetes-validate lacks.
# python-hcl2 is NOT installed here: checkov's fork bc-python-hcl2 owns the same `hcl2`
# module; the tests parse Terraform with python-hcl2 from the main venv.
# Major versions pinned: checkov's and cfn-lint's check IDs and rule sets change between majors.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  'checkov>=3.2,<4' \
  'cfn-lint>=1.20,<2' \
  'aws-sam-translator>=1.90' \
  'kubernetes-validate>=1.30' \
  'cloudcoil.models.prometheus_operator>=0.80'
"$VENV/bin/python" -c "import checkov, cfnlint, samtranslator, kubernetes_validate, botocore, cloudcoil.models.prometheus_operator"
echo "IaC venv $VENV is ready"
