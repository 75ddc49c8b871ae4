"""Grade every notebook under a folder into one CSV gradebook.

    python -m grading grade-all SUBMISSIONS_DIR --jobs 2 --out grades.csv

Each submission goes through the graded tests' checks (grading/judge.py), its functions in
workers of their own (grading/sandbox.py): `--jobs` submissions at once through one sandbox, and
one set of hidden inputs for the run (its seed is in every row). The gradebook is rewritten
atomically as each submission finishes; submissions already in it are skipped unless --force.
If a file of the grader changes during the run, grading stops: the rows written so far were
graded by the files as they were.
"""
import concurrent.futures
import csv
import hashlib
import os
import secrets
import time
from pathlib import Path

from tqdm import tqdm

from grading.judge import HiddenInputs, grade_notebook
from grading.notebook import GRADED_FUNCTIONS, find_notebooks
from grading.results import Grades
from grading.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["file", *GRADED_FUNCTIONS, "score", "seconds", "seed", "first_error"]
GRADER_FILES = ("nst_utils.py", "requirements.txt", "grading/*.py", "tests/*.py")


class GraderChanged(Exception):
    """A file the grading depends on changed while submissions were being graded."""


def grader_fingerprint(root=ROOT):
    """{path: SHA-256} of every file the grading runs, in the project at `root`."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for pattern in GRADER_FILES for path in sorted(root.glob(pattern))}


def grade(notebook, root, sandbox, hidden, options):
    """One gradebook row for the notebook at `notebook`; whatever happens, a row."""
    started = time.monotonic()
    try:
        grades = grade_notebook(notebook, hidden.seed, sandbox=sandbox, hidden=hidden, **options)
    except Exception as error:  # the sandbox itself failed: this row says so
        grades = Grades(hidden.seed, {name: {"all": f"{name}: not graded ({error})"}
                                      for name in GRADED_FUNCTIONS})
    row = {"file": str(notebook.relative_to(root)), "seed": hidden.seed,
           "seconds": f"{time.monotonic() - started:.1f}",
           "score": f"{grades.passing()}/{len(GRADED_FUNCTIONS)}", "first_error": ""}
    for result in grades.summary():
        row[result.name] = "pass" if result.passed else "fail"
        if not result.passed and not row["first_error"]:
            row["first_error"] = " ".join(result.reason.split())
    return row


def read_gradebook(path):
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as file:
        return {row["file"]: row for row in csv.DictReader(file)}


def write_gradebook(path, rows):
    """Write the whole gradebook to a temporary file, then move it into place."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows[key] for key in sorted(rows))
    os.replace(temporary, path)


def grade_all(submissions, out, jobs=2, force=False, time_limit=60, memory_limit=4096,
              timeout=900, seed=None):
    """Grade every *.ipynb under `submissions` into the CSV gradebook `out`."""
    root = submissions.resolve()
    notebooks = [Path(p) for p in find_notebooks(root)]
    gradebook = read_gradebook(out)
    todo = [p for p in notebooks if force or str(p.relative_to(root)) not in gradebook]
    jobs = max(1, min(jobs, len(todo)))
    print(f"{len(notebooks)} notebooks, {len(notebooks) - len(todo)} already graded, "
          f"{len(todo)} to grade with {jobs} jobs")
    options = {"time_limit": time_limit, "memory_limit_mb": memory_limit, "seconds": timeout}
    fingerprint = grader_fingerprint()
    seed = secrets.randbelow(2 ** 31) if seed is None else seed
    with Sandbox(memory_limit) as sandbox, \
            concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        hidden = HiddenInputs(seed, sandbox)
        print(sandbox.protections_line())
        try:
            futures = [pool.submit(grade, p, root, sandbox, hidden, options) for p in todo]
            for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                               unit="notebook"):  # rows arrive here, in this one thread
                row, now = future.result(), grader_fingerprint()
                if now != fingerprint:
                    pool.shutdown(cancel_futures=True)
                    changed = sorted(path for path in set(now) | set(fingerprint)
                                     if now.get(path) != fingerprint.get(path))
                    raise GraderChanged(f"grader files changed during the run: "
                                        f"{', '.join(changed)}. Grading stopped; the gradebook "
                                        f"keeps the rows graded before. Restore the files (git "
                                        f"status) and run again.")
                gradebook[row["file"]] = row
                write_gradebook(out, gradebook)
        finally:
            pool.shutdown(cancel_futures=True)
    if not todo and not out.exists():
        write_gradebook(out, gradebook)
    print(f"gradebook: {out}")
