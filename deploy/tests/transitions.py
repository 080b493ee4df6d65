"""State transitions per backup, copy and restore test, counted in the offline interpreter.

Standard workflows are billed per state transition: one per state entered (the `*StateEntered`
events of an execution's history; retries inside a Task are billed too but enter no state, and
the scenarios below need none). Each scenario takes the path with one round of every poll loop;
each further round adds what the `per round` column says.

    .venv-deploy/bin/python deploy/tests/transitions.py              # this template
    .venv-deploy/bin/python deploy/tests/transitions.py --before REV # and REV's (e.g. main)

test_transitions.py asserts the budgets (plain <= 3, hooks <= 15 on the one-round path).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DR, TEMPLATE, Fake, definition_json, run_machine  # noqa: E402
from test_restore_machine import test_input  # noqa: E402
from test_state_machine import copy_input, copy_to, document, full_input  # noqa: E402


def measure_after() -> dict[str, tuple[int, str]]:
    backup = definition_json()
    restore = definition_json("RestoreStateMachine")
    rows = {}
    rows["plain backup"] = (run_machine(Fake(), full_input(), definition=backup).transitions, "-")
    hooks = run_machine(Fake(job_states=["RUNNING"]),
                        full_input(PreDocument=document("stop"), PostDocument=document("start")), definition=backup)
    rows["backup with pre + post hook"] = (hooks.transitions, "+3 per hook poll, +3 per job poll")
    plain = rows["plain backup"][0]
    copy1 = run_machine(Fake(job_states=["COMPLETED"]), copy_input((DR, 90)), definition=backup).transitions
    rows["backup + 1 copy (copy execution)"] = (plain + copy1, f"{plain} + {copy1}, no polls")
    copy2 = run_machine(Fake(job_states=["COMPLETED"]),
                        copy_input((DR, 90), ("arn:aws:backup:eu-west-1:210987654321:backup-vault:dr", 90)),
                        definition=backup).transitions
    rows["backup + 2 copies"] = (plain + copy2, f"{plain} + {copy2}, no polls")
    quick = dict(restore_statuses=["COMPLETED"], instance_statuses=[("running", "ok", "ok")])
    rows["restore test, no validation"] = (run_machine(Fake(**quick), test_input(ValidateDocument=None), machine="RestoreStateMachine",
                                                       definition=restore).transitions,
                                           "+3 per 60 s restore poll, +3 per 15 s status poll")
    rows["restore test with validation"] = (run_machine(Fake(**quick), test_input(), machine="RestoreStateMachine",
                                                        definition=restore).transitions,
                                            "same, +3 per 10 s validation poll")
    return rows


def measure_before(rev: str) -> dict[str, tuple[int, str]]:
    text = subprocess.run(["git", "show", f"{rev}:deploy/cloudformation/orchestrator.yaml"], check=True,
                          capture_output=True, text=True, cwd=TEMPLATE.parent).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    old = definition_json(template_path=Path(f.name))
    rows = {}
    rows["plain backup"] = (run_machine(Fake(), full_input(), definition=old).transitions, "-")
    hooks = run_machine(Fake(job_states=["RUNNING"]),
                        full_input(PreDocument=document("stop"), PostDocument=document("start")), definition=old)
    rows["backup with pre + post hook"] = (hooks.transitions, "")
    one = run_machine(Fake(job_states=["COMPLETED"]), full_input(CopyTo=copy_to((DR, 90))), definition=old).transitions
    two = run_machine(Fake(job_states=["RUNNING", "COMPLETED"]), full_input(CopyTo=copy_to((DR, 90))),
                      definition=old).transitions
    rows["backup + 1 copy (copy execution)"] = (one, f"+{two - one} per 300 s job poll")
    return rows


def table(after: dict, before: dict | None) -> str:
    lines = ["| execution | seed | before | after | per extra round (after) |", "|---|---|---|---|---|"]
    for name, (count, note) in after.items():
        seed = "1" if name == "plain backup" else "-"
        was = str(before[name][0]) + (f" ({before[name][1]})" if before[name][1] not in ("", "-") else "") \
            if before and name in before else "-"
        lines.append(f"| {name} | {seed} | {was} | {count} | {note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REV", help="also measure the template of this git revision")
    args = parser.parse_args()
    before = measure_before(args.before) if args.before else None
    print(table(measure_after(), before))


if __name__ == "__main__":
    main()
