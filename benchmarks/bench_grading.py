"""How fast is grading? Seconds to grade our notebook with the README's command, and the
throughput of grading a class with --jobs 2, for this checkout and a baseline revision side by
side in one run (our notebook: interleaved, so the machine's load falls on both alike; the class:
one after the other).

    python benchmarks/bench_grading.py --baseline d761ba9 --json grading.json
    python benchmarks/bench_grading.py --baseline f80e8d1 --one-cpu   # all of it on one CPU
    python benchmarks/bench_grading.py --baseline HEAD --half-cpu     # in half a CPU (root)

The baseline is exported with `git archive` into a temporary folder. Its class grader is found
where it lived then (tools/grade_all.py) or where it lives now (python -m grading grade-all).
"""
import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from container_cgroup import ContainerCgroup  # noqa: E402  (in tests/)

ATTACKS_IN_CLASS = ["patches_pytest_reports", "returns_object_that_lies", "exits_at_call",
                    "forges_result_records", "hard_coded_table_of_public_inputs",
                    "sys_exit_at_call"]  # not kills_the_grader: under the old grader it would
                                         # kill this benchmark (its grandparent)
TIME_LIMIT = "30"  # seconds per cell or call, for both graders


def export(revision, folder):
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


PINNED = []  # ["taskset", "-c", "0"] with --one-cpu: every process of a grading on the first CPU
QUOTA_GROUP = []  # with --half-cpu: the cgroup.procs files of a group of half a CPU


def _join_quota_group():
    for procs in QUOTA_GROUP:
        Path(procs).write_text(f"{os.getpid()}\n")


def timed(command, cwd):
    started = time.perf_counter()
    finished = subprocess.run([*PINNED, *command], cwd=cwd, capture_output=True, text=True,
                              preexec_fn=_join_quota_group if QUOTA_GROUP else None)
    return time.perf_counter() - started, finished


def grade_one(project):
    notebook = ROOT / "nst_assignment.ipynb"
    seconds, finished = timed([sys.executable, "-m", "pytest", "tests", "-m", "graded", "-q",
                               "-p", "no:cacheprovider", f"--notebook={notebook}"], project)
    if "5/5 graded functions pass" not in finished.stdout:
        sys.exit(f"grading our notebook in {project} did not give 5/5:\n{finished.stdout[-2000:]}")
    return seconds


def grade_class(project, submissions, gradebook):
    tool = project / "tools" / "grade_all.py"
    command = ([sys.executable, str(tool)] if tool.exists()
               else [sys.executable, "-m", "grading", "grade-all"])
    seconds, finished = timed([*command, str(submissions), "--jobs", "2", "--out",
                               str(gradebook), "--time-limit", TIME_LIMIT], project)
    if finished.returncode != 0:
        sys.exit(f"grading the class in {project} failed:\n{finished.stderr[-2000:]}")
    return seconds


def write_class(folder):
    """24 submissions: the solution twice, the release, every broken kind, six attacks."""
    from submissions import ATTACKS, BROKEN, make_release, with_graded_cell_replaced

    for copy in ("solution", "solution_again"):
        shutil.copy(ROOT / "nst_assignment.ipynb", folder / f"{copy}.ipynb")
    make_release(folder / "release.ipynb")
    for kind, (function, source) in [*BROKEN.items(),
                                     *((name, ATTACKS[name]) for name in ATTACKS_IN_CLASS)]:
        with_graded_cell_replaced(function, source, folder / f"{kind}.ipynb")
    return len(list(folder.glob("*.ipynb")))


def report(results, path=None):
    """Print `results`, with the load average at the end, as JSON; also write them to `path`."""
    results["load_average_after"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="d761ba9", help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3, help="gradings of our notebook each")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--notebook-only", action="store_true", help="leave out the class")
    parser.add_argument("--one-cpu", action="store_true",
                        help="run every grading on the first CPU only (taskset -c 0)")
    parser.add_argument("--half-cpu", action="store_true",
                        help="run every grading in a cgroup of half a CPU (Gradescope's default)")
    args = parser.parse_args(argv)
    if args.one_cpu:
        PINNED[:] = ["taskset", "-c", "0"]

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch, \
            (ContainerCgroup(cpus=0.5) if args.half_cpu else contextlib.nullcontext()) as group:
        QUOTA_GROUP[:] = group.procs if group else []
        scratch = Path(scratch)
        (scratch / "baseline").mkdir()
        projects = {"baseline": export(args.baseline, scratch / "baseline"), "current": ROOT}
        one = {name: [] for name in projects}
        for _ in range(args.repeats):
            for name, project in projects.items():
                one[name].append(grade_one(project))
        results = {name: {"notebook_seconds_median": statistics.median(one[name]),
                          "notebook_seconds": [round(s, 1) for s in one[name]]}
                   for name in projects}
        if not args.notebook_only:
            submissions = scratch / "class"
            submissions.mkdir()
            results["class_size"] = count = write_class(submissions)
            for name, project in projects.items():
                seconds = grade_class(project, submissions, scratch / f"{name}.csv")
                results[name].update(class_seconds=round(seconds, 1),
                                     submissions_per_minute=round(60 * count / seconds, 2))
    results["baseline"]["revision"] = args.baseline
    results["cpus"] = ("half of one (a cpu cgroup's quota)" if args.half_cpu
                       else "one (taskset -c 0)" if args.one_cpu else os.cpu_count())
    report(results, args.json)


if __name__ == "__main__":
    main()
