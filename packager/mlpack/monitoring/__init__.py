"""What an artifact's telemetry watches in production, decided at build: the target's
service-level objective as PromQL, shared by alert rules and canary checks (objectives.py),
and the drift profile made from the calibration data, which the agent compares served
requests with (drift.py)."""
