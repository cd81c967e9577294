"""Ansible callback for `mlpack rollout`: write each device's outcome to a JSON file.

The playbooks record what they found on a device with `set_stats` (`mlpack_device` for
a rollout, `mlpack_status` for --status); at the end of the run this writes those
records, with Ansible's own per-host counts, to the file named by MLPACK_ROLLOUT_RESULTS,
so mlpack never parses Ansible's screen output.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mlpack_results"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_stats(self, stats) -> None:
        path = os.environ.get("MLPACK_ROLLOUT_RESULTS")
        if not path:
            return
        hosts = {}
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            custom = stats.custom.get(host, {})
            hosts[host] = {
                "record": dict(custom.get("mlpack_device") or {}),  # the rollout's outcome
                "status": dict(custom.get("mlpack_status") or {}),  # what --status read
                "summary": {k: int(v) for k, v in summary.items()},
            }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"hosts": hosts}, fh, indent=2, default=str)
