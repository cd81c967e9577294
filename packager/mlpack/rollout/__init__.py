"""`mlpack rollout`: put an edge artifact on a fleet with a real fleet engine.

- `ansible`: a generated playbook run by ansible-core over SSH (or any Ansible connection),
  in waves, with a health gate and automatic rollback per device.
- `greengrass`: an AWS IoT Greengrass v2 component version and a thing-group deployment
  with an exponential rollout, abort criteria and timeouts (boto3).
- `status`: per device, the version and health the mlpack agent reports.
"""
