"""The fault table of docs/reliability.md, from what the fault tests measured.

    python -m benchmarks.fault_table --run     # run the fault tests, then write the table
    python -m benchmarks.fault_table           # write the table from the last results (build/faults/)
    python -m benchmarks.fault_table --check   # also fail if a fault has no result, or lost something
    python -m benchmarks.fault_table --keep    # rows of faults without a result now stay as they are
    python -m benchmarks.fault_table --quick --check   # seconds: inject QUICK_FAULTS, write nothing

Each fault test (tests/faults.py lists them all) records, once its assertions pass, how it
injected the fault, the line the user saw and the loss it counted. This script writes one
row per injected fault between the markers in docs/reliability.md; a fault with no result
says so. Faults a test could not inject (recorded with `record_not_injected`) are listed
apart, with why and what was checked instead: no loss is shown for them and they are not
counted as measured. `--run` runs the long windows (a 60 s collector outage) that the
suite shortens.

Goal: nothing lost (the table's "lost (expected 0)"). `--quick` injects a short subset,
one fault of the build, the agent's buffer and the agent's socket (QUICK_FAULTS, their
tests run into a temporary results folder), writes no doc, and checks that each fault
was injected and lost nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tests.faults import FAULTS, FaultResult, read_results

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"
NOT_INJECTED = "Not injected, so not measured (no loss is claimed for them):"
FAULT_TESTS = ["tests/test_rollout_fleet.py", "tests/test_rollout_guard.py", "tests/test_agent_delivery.py",
               "tests/test_build_cleanup.py", "tests/test_deploy_signatures.py",
               "tests/test_agent_trust.py", "tests/test_hostile_clients.py", "tests/test_systemd_units.py"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _test_cell(result: FaultResult) -> str:
    test = result.test.split("::")
    return f"`{test[0]}`<br>`{test[-1]}`"


def table(results: dict[str, FaultResult], kept: dict[str, str] | None = None) -> str:
    """The table of injected faults, then those not injected; `kept`: rows of the current
    table (by fault title) to keep for faults without a result this time (`--keep`)."""
    kept = kept or {}
    rows = ["| fault | how the test injects it | what the user sees | lost (expected 0) | test |",
            "|---|---|---|---|---|"]
    kept_rows = 0
    not_injected = [(fault, results[fault.id]) for fault in FAULTS
                    if fault.id in results and not results[fault.id].measured]
    for fault in FAULTS:
        result = results.get(fault.id)
        if result is not None and not result.measured:
            continue
        if result is None and _cell(fault.title) in kept:
            rows.append(kept[_cell(fault.title)])
            kept_rows += 1
            continue
        if result is None:
            rows.append(f"| {_cell(fault.title)} | no result: the test did not run or did not pass | | | |")
            continue
        rows.append(
            f"| {_cell(fault.title)} | {_cell(result.injected)} | {_cell(result.user_sees)} | "
            f"**{_amount(result.lost)}** {fault.loss_unit}; {_cell(result.detail)} | {_test_cell(result)} |"
        )
    if not_injected:
        rows += ["", NOT_INJECTED, "",
                 "| fault | why it is not injected | what the test checks instead | test |", "|---|---|---|---|"]
        rows += [f"| {_cell(fault.title)} | {_cell(r.injected)} | {_cell(r.detail)} | {_test_cell(r)} |"
                 for fault, r in not_injected]
    measured = [r for r in results.values() if r.measured]
    times = [r.at for r in results.values()]
    when = (datetime.fromtimestamp(min(times), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            if times else "never")
    rows.append("")
    earlier = f" ({kept_rows} of those rows kept from an earlier run)" if kept_rows else ""
    rows.append(f"{len(measured) + kept_rows} of {len(FAULTS)} faults injected and measured{earlier}, "
                f"{len(not_injected)} not injected; results from {when} (`python -m benchmarks.fault_table --run`).")
    return "\n".join(rows)


def current_rows(doc: Path = DOC) -> dict[str, str]:
    """The table's rows now in the doc, by fault title (what `--keep` keeps)."""
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return {}
    body = text.split(START, 1)[1].split(END, 1)[0].split(NOT_INJECTED, 1)[0]  # injected faults only
    return {line.split(" | ", 1)[0].removeprefix("| "): line for line in body.splitlines()
            if line.startswith("| ") and not line.startswith(("| fault |", "|---"))
            and "| no result:" not in line}


def write(text: str, doc: Path = DOC) -> None:
    current = doc.read_text(encoding="utf-8")
    if START not in current or END not in current:
        raise SystemExit(f"{doc} lacks the {START} ... {END} markers")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


# Faults whose tests take a second or two, and those tests: what --quick injects.
QUICK_FAULTS = {
    "calibration-fails": "tests/test_build_cleanup.py::"
                         "test_a_build_that_fails_on_its_calibration_leaves_no_empty_out_folder",
    "corrupt-buffer-file": "tests/test_agent_delivery.py::test_corrupt_buffer_files_are_skipped_with_a_log_line",
    "forged-sender": "tests/test_agent_trust.py::"
                     "test_another_users_process_cannot_reach_the_socket_and_its_forged_datagrams_are_refused",
}


def quick(check: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="mlpack-faults-quick-") as tmp:
        env = {**os.environ, "MLPACK_FAULT_RESULTS": tmp}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *QUICK_FAULTS.values()],
                       cwd=REPO, env=env)  # a failed test records nothing, which the checks below report
        results = read_results(Path(tmp))
    failed = False
    for fault_id in QUICK_FAULTS:
        result = results.get(fault_id)
        if result is None or not result.measured:
            verdict, failed = "REGRESSION (no result: the test did not pass, or did not inject it)", True
        else:
            verdict = "ok" if not result.lost else "REGRESSION"
            failed = failed or bool(result.lost)
            verdict = f"lost {_amount(result.lost)} (expected 0): {verdict}"
        print(f"check: {fault_id}: {verdict}")
    return 1 if check and failed else 0


# The windows the suite shortens, at their full length here (the tests read them).
LONG_WINDOWS = {"MLPACK_FAULT_OUTAGE_S": "60"}


def run_tests(results: Path) -> int:
    env = {**os.environ, "MLPACK_FAULT_RESULTS": str(results), **LONG_WINDOWS}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", *FAULT_TESTS], cwd=REPO, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run the fault tests first (several minutes)")
    parser.add_argument("--check", action="store_true", help="fail if a fault has no result or lost something")
    parser.add_argument("--results", type=Path, help="the results folder (default build/faults)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the page whose table is rewritten")
    parser.add_argument("--keep", action="store_true",
                        help="keep the doc's rows of faults that have no result this time (e.g. after running one file)")
    parser.add_argument("--quick", action="store_true", help="inject QUICK_FAULTS only (seconds); write nothing")
    args = parser.parse_args(argv)
    if args.quick:
        return quick(args.check)
    folder = args.results
    if args.run:
        folder = folder or Path(tempfile.mkdtemp(prefix="mlpack-faults-"))
        run_tests(folder)  # a failed test leaves its row empty, which --check reports
    results = read_results(folder)
    text = table(results, current_rows(args.doc) if args.keep else None)
    write(text, args.doc)
    print(text)
    missing = [f.id for f in FAULTS if f.id not in results]
    lossy = [r.id for r in results.values() if r.measured and r.lost]
    not_injected = [r.id for r in results.values() if not r.measured]
    if not_injected:
        print(f"fault_table: not injected (listed apart, not measured): {', '.join(not_injected)}", file=sys.stderr)
    if args.check and (missing or lossy):
        print(f"fault_table: no result for {', '.join(missing) or '-'}; losses in {', '.join(lossy) or '-'}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
