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
import stat
import sys
import time
import zipfile
from pathlib import Path

from grading import cgroup
from grading.feedback import function_markdown, repeat_command, text
from grading.limits import GRADESCOPE, Limits
from grading.notebook import GRADED_FUNCTIONS, find_notebooks
from grading.results import DEFAULT_POINTS

ROOT = Path(__file__).resolve().parent.parent
CONFIG_NAME = "autograder.json"
# The bundle's settings (autograder.json) unless given; its limits are GRADESCOPE's
# (grading/limits.py): "seconds" one submission's grading in all, the sandbox's start included.
DEFAULTS = {"points": DEFAULT_POINTS, "partial_credit": False,
            "seconds": GRADESCOPE.submission_seconds, "time_limit": GRADESCOPE.time_limit,
            "memory_limit_mb": GRADESCOPE.memory_limit_mb}
EXPECTED_NAME = "nst_assignment.ipynb"
SET_UP_SECONDS = 30  # of the budget, kept for starting the sandbox and writing the results
# How Gradescope shows our messages: Markdown ("md"), every failing check of a function listed
# with its reason in a code block, shown letter for letter (grading/feedback.py); other text is
# escaped for Markdown. (Gradescope's default, "simple_format", would mangle a message with `<`.)
OUTPUT_FORMAT = "md"

# Grading one notebook's peak memory as a container's limit counts it: the sum of PSS, file-
# backed pages (TensorFlow's libraries) included, over the whole grading process tree (the
# grader, which does not import TensorFlow, the sandbox and one worker): 569-611 MiB, 324-339 of
# it anonymous, on a fresh Debian 12 where no other process shares TensorFlow's pages
# (docs/gradescope.md; tests/test_gradescope_fresh_system.py fails if it passes this). Below
# this, run() writes a results.json that says which setting to raise.
GRADING_NEEDS_MIB = 700
# Gradescope's Autograder Settings, "Container Specifications": (its label, MiB of memory, read
# as the least the label may mean: "0.75GB" as 750,000,000 bytes, 715 MiB). Gradescope calls
# the default "768MB" elsewhere; either way the default container has what grading needs.
CONTAINER_SPECIFICATIONS = tuple((label, int(gb * 1e9) >> 20) for label, gb in (
    ("0.5 CPU, 0.75GB RAM", 0.75), ("1.0 CPU, 1.5GB RAM", 1.5), ("2.0 CPU, 3.0GB RAM", 3.0),
    ("4.0 CPU, 6.0GB RAM", 6.0)))

# The Pythons every pinned package of grading/requirements.txt has wheels for (checked with
# `pip download --no-deps --only-binary=:all: --python-version X.Y` for each), newest first.
SUPPORTED_PYTHONS = ("3.13", "3.12", "3.11")
BASE_IMAGE = "Ubuntu 22.04"  # Gradescope's default base image, and the one docs/gradescope.md names

# The two scripts of the zip, as templates (grading/templates/): setup.sh's @PYTHONS@ and
# @BASE_IMAGE@ are filled in from the two facts above.
TEMPLATES = Path(__file__).resolve().parent / "templates"


def setup_sh():
    return (TEMPLATES / "setup.sh").read_text().replace(
        "@PYTHONS@", " ".join(SUPPORTED_PYTHONS)).replace("@BASE_IMAGE@", BASE_IMAGE)


def run_autograder():
    return (TEMPLATES / "run_autograder").read_text()


def write_bundle(path, **settings):
    """Write the autograder zip to `path`: setup.sh, run_autograder, its settings (DEFAULTS
    unless given: points, seconds, time_limit, memory_limit_mb) and what grading needs from
    the project (grading/ with its requirements.txt, nst_utils.py, nst_course/). Every entry
    carries its Unix mode, a regular file's: rwxr-xr-x for the two scripts, rw-r--r-- for the
    rest (the sandbox's workers, as nobody, read the project's files)."""
    settings = {**DEFAULTS, **{key: value for key, value in settings.items() if value}}
    if set(settings["points"]) != set(GRADED_FUNCTIONS):
        raise ValueError(f"give points for exactly these functions: {', '.join(GRADED_FUNCTIONS)}")
    files = [ROOT / "nst_utils.py", *sorted((ROOT / "nst_course").glob("*.py")),
             ROOT / "grading" / "requirements.txt", *sorted((ROOT / "grading").glob("*.py"))]
    entries = [("setup.sh", setup_sh().encode(), 0o755),
               ("run_autograder", run_autograder().encode(), 0o755),
               (CONFIG_NAME, (json.dumps(settings, indent=1) + "\n").encode(), 0o644),
               *((str(file.relative_to(ROOT)), file.read_bytes(), 0o644) for file in files)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, time.localtime()[:6])
            info.create_system = 3  # Unix: unzip reads external_attr's high bits as st_mode
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, data)
    return path


def limits_of(settings):
    """The Limits of a bundle's settings: the time it may take, less SET_UP_SECONDS."""
    return Limits(time_limit=settings["time_limit"], memory_limit_mb=settings["memory_limit_mb"],
                  submission_seconds=settings["seconds"] - SET_UP_SECONDS)


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


def results_for(grades, settings, note, seconds, notebook=EXPECTED_NAME):
    """Gradescope's results.json for `grades` (None: nothing was graded, `note` says why), scored
    with settings' points and partial_credit."""
    points, partial = settings["points"], settings.get("partial_credit", False)
    tests, lines = [], [text(note)] if note else []
    earned = grades.points(points, partial) if grades is not None else {}
    for name in GRADED_FUNCTIONS:
        result = None if grades is None else grades.function(name)
        passed = result is not None and result.passed
        tests.append({"name": name, "score": earned.get(name, 0), "max_score": points[name],
                      "status": "passed" if passed else "failed",
                      "output": text(note) if result is None else function_markdown(result),
                      "output_format": OUTPUT_FORMAT, "visibility": "visible"})
    if grades is not None:
        command = repeat_command(notebook, grades.seed, limits_of(settings))
        lines.append(f"{grades.total_line()}. Hidden inputs were drawn from seed {grades.seed}; "
                     f"this grades your notebook again with them, in the course's folder:\n\n"
                     f"    {command}\n")
    return {"score": round(sum(test["score"] for test in tests), 4),
            "execution_time": round(seconds), "output": "\n\n".join(lines),
            "output_format": OUTPUT_FORMAT, "test_output_format": OUTPUT_FORMAT,
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def container_memory_mib(cgroups=Path("/sys/fs/cgroup"), membership=Path("/proc/self/cgroup")):
    """The memory limit of the container we run in, in MiB, or None if there is none: the
    smallest memory.max (cgroup v2) or memory.limit_in_bytes (cgroup v1) on the way from our own
    cgroup up to the root, and at the root of the mount (which is a container's own cgroup)."""
    try:
        groups = cgroup.memberships(membership)
    except OSError:
        groups = {}
    places = [(cgroups, "memory.max"), (cgroups / "memory", "memory.limit_in_bytes")]
    for controller, top, name in (("", cgroups, "memory.max"),  # v2
                                  ("memory", cgroups / "memory", "memory.limit_in_bytes")):  # v1
        if controller not in groups:
            continue
        folder = top / groups[controller].strip("/")
        while folder != top and top in folder.parents:
            places.append((folder, name))
            folder = folder.parent
    limits = []
    for folder, name in places:
        try:
            value = (folder / name).read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 1 << 60:  # "max", or v1's huge "no limit"
            limits.append(int(value) / (1 << 20))
    return min(limits, default=None)


def memory_too_small(limit_mib):
    """None if a container with `limit_mib` MiB (None: no limit) can grade a notebook; else the
    sentence that tells the instructor which Gradescope setting to choose."""
    if limit_mib is None or limit_mib >= GRADING_NEEDS_MIB:
        return None
    enough = next((label for label, mib in CONTAINER_SPECIFICATIONS if mib >= GRADING_NEEDS_MIB),
                  CONTAINER_SPECIFICATIONS[-1][0])
    return (f"Not graded: the autograder has {limit_mib:,.0f} MB of memory and grading needs about "
            f"{GRADING_NEEDS_MIB:,} MB. Instructor: under the assignment's Autograder Settings, "
            f"Container Specifications, choose \"{enough}\" or more, then regrade the "
            f"submissions. (Student: this says nothing about your submission; it can be graded "
            f"once the instructor has done so.)")


def memory_check(results_folder, settings, started, container_mib=None):
    """Whether the container has too little memory to grade (`container_mib`, default: read
    from its cgroup); if so, results_folder/results.json says which setting to raise (grading
    would be killed halfway, and Gradescope would show only "Killed")."""
    try:
        too_small = memory_too_small(container_memory_mib() if container_mib is None
                                     else container_mib)
    except Exception:  # cannot tell: grade as usual
        return False
    if too_small:
        print(too_small, flush=True)  # for the instructor's log (stdout) too
        results = results_for(None, settings, too_small, time.monotonic() - started)
        (results_folder / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return bool(too_small)


def run(root, container_mib=None):
    """Grade root/submission into root/results/results.json; never raise. `container_mib`:
    the container's memory limit in MiB (default: read from its cgroup)."""
    started = time.monotonic()
    results_folder = root / "results"
    results_folder.mkdir(parents=True, exist_ok=True)
    settings = {**DEFAULTS, **json.loads((root / "source" / CONFIG_NAME).read_text())} \
        if (root / "source" / CONFIG_NAME).exists() else DEFAULTS
    if memory_check(results_folder, settings, started, container_mib):
        return
    try:
        notebook, note = find_submission(root / "submission")
        grades = None
        if notebook is not None:
            from grading.judge import grade_notebook
            from grading.sandbox import Sandbox

            limits = limits_of(settings)
            with Sandbox(limits.memory_limit_mb) as sandbox:
                print(sandbox.protections_line())  # in the autograder's output, for instructors
                grades = grade_notebook(notebook, secrets.randbelow(2 ** 31), limits,
                                        sandbox=sandbox)
        results = results_for(grades, settings, note, time.monotonic() - started,
                              notebook.name if notebook is not None else EXPECTED_NAME)
    except Exception as error:  # the autograder's own failure: still a results.json
        results = results_for(None, settings, f"The autograder failed ({error!r}); "
                              f"please tell your instructor.", time.monotonic() - started)
    (results_folder / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    run(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTOGRADER_ROOT",
                                                                    "/autograder")))
