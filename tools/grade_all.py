"""Grade every notebook under a folder, each in its own process, into one CSV gradebook.

    python tools/grade_all.py SUBMISSIONS_DIR --jobs 2 --out grades.csv

Each submission runs `python -m pytest tests -m graded --notebook FILE` in a process of its own,
stopped when it exceeds --timeout seconds or --memory-limit MB, so a submission that hangs,
crashes or eats memory only ever costs its own row. The gradebook is rewritten (atomically) as
each submission finishes; submissions already in it are skipped unless --force.
"""
import argparse
import concurrent.futures
import csv
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import psutil
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from notebook_grading import GRADED_FUNCTIONS, graded_function_of  # noqa: E402

COLUMNS = ["file", *GRADED_FUNCTIONS, "score", "seconds", "first_error"]


def tree_rss(process):
    """Resident memory of a process and all its children, in bytes."""
    try:
        processes = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes if p.is_running())
    except psutil.Error:
        return 0


def run_limited(command, timeout, memory_limit, log):
    """Run `command`; return (exit code, why it was stopped or None)."""
    process = psutil.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    started, stopped = time.monotonic(), None
    while process.poll() is None:
        if time.monotonic() - started > timeout:
            stopped = f"grading did not finish within {timeout:.0f} s"
        elif tree_rss(process) > memory_limit:
            stopped = f"grading used more than {memory_limit // 2**20} MB of memory"
        if stopped:
            os.killpg(process.pid, 9)
            process.wait()
            break
        time.sleep(0.2)
    return process.returncode, stopped


def read_junit(path):
    """{graded function: first failure message or None} from a JUnit XML report."""
    results = {}
    for case in ElementTree.parse(path).iter("testcase"):
        function = graded_function_of(case.get("name", ""))
        if function is None:
            continue
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        message = None if problem is None else " ".join(
            (problem.get("message") or problem.text or "failed").split())
        if results.get(function) is None:
            results[function] = message
    return results


def grade(notebook, root, time_limit, timeout, memory_limit):
    """One gradebook row for the notebook at `notebook`."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        report = Path(scratch) / "report.xml"
        command = [sys.executable, "-m", "pytest", str(ROOT / "tests"), "-m", "graded", "-q",
                   "-p", "no:cacheprovider", "--notebook", str(notebook),
                   "--time-limit", str(time_limit), f"--junitxml={report}"]
        with open(Path(scratch) / "log.txt", "w") as log:
            code, stopped = run_limited(command, timeout, memory_limit, log)
        results = read_junit(report) if report.exists() and not stopped else {}
        if not results:
            reason = stopped or f"the grading process crashed (exit code {code})"
            results = {name: reason for name in GRADED_FUNCTIONS}
    row = {"file": str(notebook.relative_to(root)), "seconds": f"{time.monotonic() - started:.1f}"}
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
        writer = csv.DictWriter(file, COLUMNS)
        writer.writeheader()
        writer.writerows(rows[key] for key in sorted(rows))
    os.replace(temporary, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="folder searched for *.ipynb")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), help="the gradebook CSV")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once")
    parser.add_argument("--force", action="store_true", help="regrade those already graded")
    parser.add_argument("--time-limit", type=float, default=60,
                        help="seconds one graded cell or call may take (see pytest --time-limit)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds one whole submission may take")
    parser.add_argument("--memory-limit", type=int, default=4096,
                        help="MB one submission's grading may use")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")

    root = args.submissions.resolve()
    notebooks = sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    gradebook = read_gradebook(args.out)
    todo = [p for p in notebooks if args.force or str(p.relative_to(root)) not in gradebook]
    print(f"{len(notebooks)} notebooks, {len(notebooks) - len(todo)} already graded, "
          f"{len(todo)} to grade with {args.jobs} jobs")
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(grade, p, root, args.time_limit, args.timeout,
                               args.memory_limit * 2**20) for p in todo]
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                           unit="notebook"):  # rows arrive here, in this one thread
            row = future.result()
            gradebook[row["file"]] = row
            write_gradebook(args.out, gradebook)
    if not todo and not args.out.exists():
        write_gradebook(args.out, gradebook)
    print(f"gradebook: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
