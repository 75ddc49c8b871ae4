"""Does a busy submission slow its classmates? `grade-all --jobs 2` grades a class of one
hanging submission and four copies of our notebook (the classmates): the hanging one holds one
job for its whole time limit while the classmates are graded one after another in the other.
It hangs either idle (`time.sleep`) or busy (eight processes spinning); the classmates' seconds
beside the busy one against beside the idle one is the slowdown. What is compared is the sum of
the four classmates' seconds (the first one's include the sandbox's start, TensorFlow's import,
alike in both): a starved classmate holds up the ones after it, so no single one tells.

Two ways to grade, in copies of the project: each worker in a control group of its own held to
one CPU (as the grader does when root), and no groups (as for a grader who is not root). Each
in two places: on the bare machine, where Linux's autogroups (one per session, and every worker
starts a session) may already share the CPU out fairly, and inside a CPU control group of its
own, as in a container, where autogroups do not apply. All eight cases take turns, so the
machine's load falls on all alike. Needs root and cgroup v1 (this machine's).

    python benchmarks/bench_cpu_share.py --repeats 3 --json cpu.json
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench_grading import report  # noqa: E402
from grading import cgroup  # noqa: E402
from submissions import cell, project_copy, with_graded_cell_replaced  # noqa: E402
from test_grading_resources import SPINNER  # noqa: E402
from test_grading_robustness import grade_all  # noqa: E402

HANG_SECONDS = "20"  # the time limit: the hanging submission holds its job this long
CLASSMATES = 4
IDLE = cell("compute_content_cost", """
import time
time.sleep(600)""")
NO_CGROUP = {"def _try_cgroup():\n": "def _try_cgroup():\n    raise OSError('off')\n"}


def changed(project, replacements):
    """The project at `project`, grading/protections.py changed by `replacements` {old: new}."""
    probes = project / "grading" / "protections.py"
    text = probes.read_text()
    for old, new in replacements.items():
        if old not in text:
            sys.exit(f"{probes} has changed: this benchmark cannot find {old!r} in it")
        text = text.replace(old, new)
    probes.write_text(text)
    return project


@contextlib.contextmanager
def places():
    """{place: the cgroup.procs file this process moves into to grade there}; the container's
    group is removed afterwards."""
    bare = cgroup.own_group("cpu")
    container = bare / f"bench-cpu-container-{os.getpid()}"
    container.mkdir()
    try:
        yield {"bare machine": bare / "cgroup.procs",
               "in a container's cpu group": container / "cgroup.procs"}
    finally:
        (bare / "cgroup.procs").write_text(f"{os.getpid()}\n")
        container.rmdir()


def classmates_seconds(project, folder, scratch):
    """Grade `folder` with the README's class command in `project`: the seconds of each
    classmate."""
    gradebook = Path(tempfile.mkdtemp(dir=scratch)) / "grades.csv"  # a new one: nothing skipped
    rows, _ = grade_all(folder, gradebook, "--jobs", "2", "--time-limit", HANG_SECONDS,
                        project=project)
    hanging = rows["0_hangs.ipynb"]
    if "did not finish within" not in hanging["errors"]:
        sys.exit(f"the hanging submission did not hang in {project}: {hanging}")
    for row in rows.values():
        if row["file"] != "0_hangs.ipynb" and row["score"] != "100":
            sys.exit(f"a classmate did not get 5/5 in {project}: {row}")
    return [float(rows[f"{n}_classmate.ipynb"]["seconds"]) for n in range(1, CLASSMATES + 1)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="turns of the eight cases")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the CPU groups are made only when the grader is root: run this as root")
    if (cgroup.CGROUPS / "cgroup.controllers").exists():
        sys.exit("this benchmark's container group is made for cgroup v1; this machine has v2")

    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as scratch, places() as where:
        scratch = Path(scratch)
        projects = {"a group per worker, one cpu each": project_copy(scratch / "grouped"),
                    "no groups": changed(project_copy(scratch / "no-groups"), NO_CGROUP)}
        classes = {"beside an idle submission": IDLE, "beside the spinner": SPINNER}
        for case, hanging in classes.items():
            folder = classes[case] = scratch / case.replace(" ", "_")
            folder.mkdir()
            with_graded_cell_replaced("compute_content_cost", hanging, folder / "0_hangs.ipynb")
            for n in range(1, CLASSMATES + 1):
                (folder / f"{n}_classmate.ipynb").write_bytes(
                    (ROOT / "nst_assignment.ipynb").read_bytes())
        seconds = {(w, p, c): [] for w in where for p in projects for c in classes}
        for turn in range(args.repeats):
            for (place, project, case), times in seconds.items():
                where[place].write_text(f"{os.getpid()}\n")  # the grader starts here
                each = classmates_seconds(projects[project], classes[case], scratch)
                times.append(round(sum(each), 1))
                print(f"turn {turn + 1}: {place}, {project}, {case}: {each} s", flush=True)
    results = {}
    for place in where:
        for project in projects:
            idle, busy = (seconds[place, project, case] for case in classes)
            results[f"{place}, {project}"] = {
                "classmates_seconds_beside_idle": idle, "classmates_seconds_beside_spinner": busy,
                "slowdown_of_medians": round(statistics.median(busy) / statistics.median(idle),
                                             2)}
    report(results, args.json)


if __name__ == "__main__":
    main()
