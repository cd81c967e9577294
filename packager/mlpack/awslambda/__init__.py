"""AWS Lambda, from package to measured function: what a Lambda zip leaves out of its wheels
(prune.py) and the bytecode it ships for a read-only /var/task (bytecode.py), the build step
that makes the zip (zip_step.py), its cold start measured as Lambda runs it (measure.py,
against the local Runtime API of emulator.py) and reported (report.py), and `mlpack serve`'s
local function: the handler under awslambdaric (local.py) behind an HTTP front that sends
Function URL events (function_url.py)."""
