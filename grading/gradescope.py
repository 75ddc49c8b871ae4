"""Grade on Gradescope: build the autograder zip, and grade one submission inside it.

    python -m grading gradescope autograder.zip [--points compute_content_cost=20,...]

Gradescope unpacks the zip into /autograder/source, runs setup.sh once to build the image, then
for each submission runs run_autograder, which calls `run(root)` below: it grades the one
notebook under root/submission with grading.judge and writes root/results/results.json (one
test per graded function, its score, and the same sentence pytest prints when it fails).
"""
import json
import os
import secrets
import sys
import time
import zipfile
from pathlib import Path

from grading.notebook import GRADED_FUNCTIONS, find_notebooks

ROOT = Path(__file__).resolve().parent.parent
CONFIG_NAME = "autograder.json"
DEFAULTS = {"points": {name: 100 / len(GRADED_FUNCTIONS) for name in GRADED_FUNCTIONS},
            "seconds": 600, "time_limit": 60, "memory_limit_mb": 4096}
EXPECTED_NAME = "nst_assignment.ipynb"
SET_UP_SECONDS = 30  # of the budget, kept for starting the sandbox and writing the results

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, to build the autograder's image.
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update
if ! command -v python3.11 >/dev/null; then
    apt-get install -y software-properties-common
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update
fi
apt-get install -y python3.11 python3.11-venv
python3.11 -m venv /autograder/source/.venv
/autograder/source/.venv/bin/pip install --no-cache-dir -r requirements.txt
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission. AUTOGRADER_ROOT (default /autograder) holds
# source/ (this bundle), submission/ (the student's files) and results/ (results.json).
root="${AUTOGRADER_ROOT:-/autograder}"
python="$root/source/.venv/bin/python"
[ -x "$python" ] || python=python3
cd "$root/source" && exec "$python" -m grading.gradescope "$root"
"""


def write_bundle(path, **settings):
    """Write the autograder zip to `path`: setup.sh, run_autograder, its settings (DEFAULTS
    unless given: points, seconds, time_limit, memory_limit_mb) and what grading needs from
    the project (requirements.txt, nst_utils.py, grading/)."""
    settings = {**DEFAULTS, **{key: value for key, value in settings.items() if value}}
    if set(settings["points"]) != set(GRADED_FUNCTIONS):
        raise ValueError(f"give points for exactly these functions: {', '.join(GRADED_FUNCTIONS)}")
    files = [ROOT / "requirements.txt", ROOT / "nst_utils.py",
             *sorted((ROOT / "grading").glob("*.py"))]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, text, mode in (("setup.sh", SETUP_SH, 0o755),
                                 ("run_autograder", RUN_AUTOGRADER, 0o755),
                                 (CONFIG_NAME, json.dumps(settings, indent=1) + "\n", 0o644)):
            info = zipfile.ZipInfo(name, time.localtime()[:6])
            info.external_attr = mode << 16
            bundle.writestr(info, text)
        for file in files:
            bundle.write(file, str(file.relative_to(ROOT)))
    return path


def find_submission(folder):
    """(the notebook to grade, a note for the student) or (None, why nothing can be graded)."""
    notebooks = [Path(p) for p in find_notebooks(folder)]
    if not notebooks:
        return None, (f"No notebook was submitted: upload your {EXPECTED_NAME} (the .ipynb file, "
                      f"not a PDF or a zip).")
    if len(notebooks) == 1:
        return notebooks[0], ""
    named = [p for p in notebooks if p.name == EXPECTED_NAME]
    listed = ", ".join(str(p.relative_to(folder)) for p in notebooks)
    if len(named) == 1:
        return named[0], f"Several notebooks were submitted ({listed}); {EXPECTED_NAME} was graded."
    return None, (f"Several notebooks were submitted ({listed}) and it is not clear which to "
                  f"grade: submit only your {EXPECTED_NAME}.")


def results_for(grades, points, note, seconds):
    """Gradescope's results.json for `grades` (None: nothing was graded, `note` says why)."""
    tests, lines = [], [note] if note else []
    for name in GRADED_FUNCTIONS:
        result = None if grades is None else grades.function(name)
        passed = result is not None and result.passed
        reason = note if result is None else result.reason
        tests.append({"name": name, "score": points[name] if passed else 0,
                      "max_score": points[name], "status": "passed" if passed else "failed",
                      "output": "All checks pass." if passed else reason,
                      "visibility": "visible"})
    if grades is not None:
        lines.append(f"{grades.total_line()}. Hidden inputs were drawn from seed {grades.seed}.")
    return {"score": round(sum(test["score"] for test in tests), 4),
            "execution_time": round(seconds), "output": " ".join(lines),
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def run(root):
    """Grade root/submission into root/results/results.json; never raise."""
    started = time.monotonic()
    results_folder = root / "results"
    results_folder.mkdir(parents=True, exist_ok=True)
    settings = {**DEFAULTS, **json.loads((root / "source" / CONFIG_NAME).read_text())} \
        if (root / "source" / CONFIG_NAME).exists() else DEFAULTS
    try:
        notebook, note = find_submission(root / "submission")
        grades = None
        if notebook is not None:
            from grading.judge import grade_notebook
            from grading.sandbox import Sandbox

            with Sandbox(settings["memory_limit_mb"]) as sandbox:
                print(sandbox.protections_line())  # in the autograder's output, for instructors
                grades = grade_notebook(notebook, secrets.randbelow(2 ** 31),
                                        settings["time_limit"], settings["memory_limit_mb"],
                                        sandbox=sandbox,
                                        seconds=settings["seconds"] - SET_UP_SECONDS)
        results = results_for(grades, settings["points"], note, time.monotonic() - started)
    except Exception as error:  # the autograder's own failure: still a results.json
        results = results_for(None, settings["points"], f"The autograder failed ({error!r}); "
                              f"please tell your instructor.", time.monotonic() - started)
    (results_folder / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    run(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTOGRADER_ROOT",
                                                                    "/autograder")))
