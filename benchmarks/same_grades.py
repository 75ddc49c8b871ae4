"""Do two revisions give the same grades? Every submission of tests/submissions.py (the
solution, the release, each broken kind and each attack) is graded by `grade-all` with one seed,
by a baseline revision and by this checkout, each in a copy of its project (attacks are graded
only in copies); the two gradebooks must agree cell for cell, but for the seconds each took and
what differs from run to run inside a message (process ids, temporary folders). For changes that
should not change behaviour, such as a restructuring:

    python benchmarks/same_grades.py --baseline 98cdb23

Exit status 0 if the grades are the same, 1 if not (each difference printed).
"""
import argparse
import csv
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench_grading import export  # noqa: E402
from submissions import (ATTACKS, BROKEN, make_release, project_copy,  # noqa: E402  (in tests/)
                         with_graded_cell_replaced)

RUN_TO_RUN = [(re.compile(r"/proc/\d+"), "/proc/PID"),
              (re.compile(r"nst-sandbox-[^/]+/(\w+)-[^/]+"), r"nst-sandbox-X/\1-X")]


def write_class(folder):
    shutil.copy(ROOT / "nst_assignment.ipynb", folder / "solution.ipynb")
    make_release(folder / "release.ipynb")
    for kind, (function, source) in {**BROKEN, **ATTACKS}.items():
        with_graded_cell_replaced(function, source, folder / f"{kind}.ipynb")
    return folder


def gradebook(project, submissions, out, seed):
    """{file: row} of `grade-all` run in `project` on `submissions`."""
    finished = subprocess.run([sys.executable, "-m", "grading", "grade-all", str(submissions),
                               "--out", str(out), "--seed", str(seed), "--time-limit", "30"],
                              cwd=project, capture_output=True, text=True)
    if finished.returncode != 0:
        sys.exit(f"grade-all failed in {project}:\n{finished.stderr[-2000:]}")
    with open(out, newline="") as file:
        return {row["file"]: row for row in csv.DictReader(file)}


def masked(text):
    for pattern, replacement in RUN_TO_RUN:
        text = pattern.sub(replacement, text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--seed", type=int, default=7, help="the hidden inputs' seed, for both")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="same-grades-") as scratch:
        scratch = Path(scratch)
        (scratch / "baseline").mkdir()
        submissions = write_class(Path(tempfile.mkdtemp(dir=scratch)))
        books = {}
        for name, project in (("baseline", export(args.baseline, scratch / "baseline")),
                              ("current", project_copy(scratch / "current"))):
            books[name] = gradebook(project, submissions, scratch / f"{name}.csv", args.seed)
    before, after = books["baseline"], books["current"]
    differences = [f"{file}: only in one gradebook" for file in sorted(set(before) ^ set(after))]
    for file in sorted(set(before) & set(after)):
        for column, value in before[file].items():
            if column != "seconds" and masked(value) != masked(after[file].get(column, "")):
                differences.append(f"{file} {column}:\n  {args.baseline}: {value[:300]}\n"
                                   f"  current: {after[file].get(column, '')[:300]}")
    print("\n".join(differences))
    print(f"{len(before)} submissions graded by {args.baseline} and by this checkout (seed "
          f"{args.seed}): {len(differences)} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
