"""Grade every notebook under a folder into one CSV gradebook.

    python -m grading grade-all SUBMISSIONS_DIR --jobs 2 --out grades.csv

Each submission is graded by the graded tests, `python -m pytest tests -m graded --notebook FILE`,
in a process of its own (its functions run in workers of their own, see grading/sandbox.py), read
back from pytest's JUnit XML report. The gradebook is rewritten atomically as each submission
finishes; submissions already in it are skipped unless --force. If a file of the grader changes
during the run, grading stops: the rows written so far were graded by the files as they were.
"""
import concurrent.futures
import csv
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tqdm import tqdm

from grading.notebook import GRADED_FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["file", *GRADED_FUNCTIONS, "score", "seconds", "seed", "first_error"]
GRADED_TEST = re.compile(r"test_(\w+)\[(.+)\]")
GRADER_FILES = ("nst_utils.py", "requirements.txt", "grading/*.py", "tests/*.py")


class GraderChanged(Exception):
    """A file the grading depends on changed while submissions were being graded."""


def graded_function_of(test_id):
    """The graded function a test checks: graded tests are test_<function>[<check>]."""
    match = GRADED_TEST.fullmatch(test_id)
    return match[1] if match and match[1] in GRADED_FUNCTIONS else None


def grader_fingerprint(root=ROOT):
    """{path: SHA-256} of every file the grading runs, in the project at `root`."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for pattern in GRADER_FILES for path in sorted(root.glob(pattern))}


def read_junit(path):
    """({graded function: first failure message or None}, seed) from a JUnit XML report."""
    results, tree = {}, ElementTree.parse(path)
    seeds = [p.get("value") for p in tree.iter("property") if p.get("name") == "seed"]
    for case in tree.iter("testcase"):
        function = graded_function_of(case.get("name", ""))
        if function is None:
            continue
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        message = None if problem is None else " ".join(
            (problem.get("message") or problem.text or "failed").split())
        if results.get(function) is None:
            results[function] = message
    return results, seeds[0] if seeds else ""


def grade(notebook, root, options, timeout):
    """One gradebook row for the notebook at `notebook`."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        report = Path(scratch) / "report.xml"
        command = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_graded_functions.py"),
                   "-m", "graded", "-q",
                   "-p", "no:cacheprovider", f"--notebook={notebook}", *options,
                   f"--junitxml={report}"]
        with open(Path(scratch) / "log.txt", "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                code, stopped = process.wait(timeout), None
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code, stopped = process.wait(), f"grading did not finish within {timeout:.0f} s"
        results, seed = read_junit(report) if report.exists() and not stopped else ({}, "")
        if not results:
            reason = stopped or f"the grading process failed (exit code {code})"
            results = {name: reason for name in GRADED_FUNCTIONS}
    row = {"file": str(notebook.relative_to(root)), "seconds": f"{time.monotonic() - started:.1f}",
           "seed": seed}
    for name in GRADED_FUNCTIONS:
        passed = name in results and results[name] is None
        row[name] = "pass" if passed else "fail"
        if not passed and "first_error" not in row:
            row["first_error"] = f"{name}: {results.get(name) or 'no test ran for it'}"
    row["score"] = f"{sum(row[n] == 'pass' for n in GRADED_FUNCTIONS)}/{len(GRADED_FUNCTIONS)}"
    row.setdefault("first_error", "")
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
    notebooks = sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    gradebook = read_gradebook(out)
    todo = [p for p in notebooks if force or str(p.relative_to(root)) not in gradebook]
    print(f"{len(notebooks)} notebooks, {len(notebooks) - len(todo)} already graded, "
          f"{len(todo)} to grade with {jobs} jobs")
    options = [f"--time-limit={time_limit}", f"--memory-limit={memory_limit}"]
    options += [] if seed is None else [f"--seed={seed}"]
    fingerprint = grader_fingerprint()
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(grade, p, root, options, timeout) for p in todo]
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                           unit="notebook"):  # rows arrive here, in this one thread
            row, now = future.result(), grader_fingerprint()
            if now != fingerprint:
                pool.shutdown(cancel_futures=True)
                changed = sorted(path for path in set(now) | set(fingerprint)
                                 if now.get(path) != fingerprint.get(path))
                raise GraderChanged(f"grader files changed during the run: {', '.join(changed)}. "
                                    f"Grading stopped; the gradebook keeps the rows graded "
                                    f"before. Restore the files (git status) and run again.")
            gradebook[row["file"]] = row
            write_gradebook(out, gradebook)
    if not todo and not out.exists():
        write_gradebook(out, gradebook)
    print(f"gradebook: {out}")
