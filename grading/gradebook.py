"""Grade every notebook under a folder into one CSV gradebook.

    python -m grading grade-all SUBMISSIONS_DIR --jobs 2 --out grades.csv [--feedback DIR]

Each submission goes through the graded tests' checks (grading/judge.py), its functions in
workers of their own (grading/sandbox.py): `--jobs` submissions at once through one sandbox, and
one set of hidden inputs for the class (its seed is in every row, and a resumed run keeps it).
A row holds the student (from Canvas's or Moodle's download names, grading/lms.py), the status,
the points, the notebook's SHA-256 and every check's result, so that a rerun grades only new or
changed notebooks and rescores the others for other --points without grading them again. The
gradebook is rewritten whole as each submission finishes (a write that fails is said and tried
again with the next); the class summary (grading/summary.py) and the feedback files
(grading/feedback.py) are written at the end. If a file of the grader changes during the run,
grading stops: the rows written so far were graded by the files as they were.
"""
import collections
import concurrent.futures
import csv
import hashlib
import io
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from grading.cells import escape_name, neutralise, write_whole
from grading.feedback import feedback_markdown, repeat_command
from grading.judge import HiddenInputs, grade_notebook
from grading.limits import LIMITS
from grading.lms import LmsFileError, number, owner
from grading.notebook import GRADED_FUNCTIONS, MAX_NOTEBOOK_BYTES, UNTRUSTED, find_notebooks
from grading.plans import check_names
from grading.results import DEFAULT_POINTS, GONE, GRADER_FAILED, Grades, counts
from grading.sandbox import Sandbox
from grading.summary import write_summary

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["file", "student", "status", "score", "max_score", *GRADED_FUNCTIONS, "errors",
           "seconds", "seed", "sha256", "points", "partial_credit", "results"]
GRADER_FILES = ("nst_utils.py", "nst_course/*.py", "requirements.txt", "grading/*.py",
                "tests/*.py")
NOTE = re.compile(f"; (the newest of [0-9]+ notebooks|{GONE}).*", re.DOTALL)  # after a status


class GraderChanged(Exception):
    """A file the grading depends on changed while submissions were being graded."""


class GradebookError(LmsFileError):
    """A gradebook file that is not one grade-all wrote; the message names it and the column."""


@dataclass
class Entry:
    """One gradebook row: `file` as escape_name writes it, its Grades (None: not graded)."""
    file: str
    student: str
    status: str
    grades: Grades = None
    sha256: str = ""
    seconds: float = 0.0


def grader_fingerprint(root=ROOT):
    """{path: SHA-256} of every file the grading runs, in the project at `root`."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for pattern in GRADER_FILES for path in sorted(root.glob(pattern))}


def digest(path):
    """The SHA-256 of the (untrusted) file at `path`, or '' if it cannot be read as one."""
    try:
        with os.fdopen(os.open(path, UNTRUSTED), "rb") as file:
            return hashlib.sha256(file.read(MAX_NOTEBOOK_BYTES + 1)).hexdigest()
    except OSError:
        return ""


def grade(notebook, hidden, sandbox, limits):
    """(Grades, seconds) of the notebook at `notebook`; whatever happens, Grades."""
    started = time.monotonic()
    try:
        grades = grade_notebook(notebook, hidden.seed, limits, sandbox=sandbox, hidden=hidden)
    except Exception as error:  # the sandbox itself failed: this row says so
        why = f"the sandbox failed ({error}); the next run grades it again"
        grades = Grades(hidden.seed, {name: dict.fromkeys(checks, f"{name}: not graded: {why}")
                                      for name, checks in check_names().items()},
                        f"{GRADER_FAILED}: {why}")
    return grades, time.monotonic() - started


def points_text(points):
    return ",".join(f"{name}={number(value)}" for name, value in points.items())


def row(entry, points, partial_credit):
    """The gradebook row of `entry`, scored with `points`: every text cell neutralised."""
    cells = {"file": entry.file, "student": entry.student, "status": entry.status,
             "sha256": entry.sha256, "seconds": f"{entry.seconds:.1f}",
             "points": points_text(points), "partial_credit": "yes" if partial_credit else "no"}
    grades = entry.grades
    if grades is not None:
        earned = grades.points(points, partial_credit)
        cells.update({name: number(value) for name, value in earned.items()})
        cells.update(score=number(sum(earned.values())), max_score=number(sum(points.values())),
                     seed=grades.seed, results=json.dumps(grades.results, ensure_ascii=False),
                     errors=" | ".join(result.reason  # one plain line each (Grades)
                                       for result in grades.summary() if not result.passed))
    return {key: neutralise(value) for key, value in cells.items()}


def read_rows(path):
    """The rows of the gradebook at `path` (GradebookError if it is not one)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise GradebookError(f"{path} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise GradebookError(f"{path} is not UTF-8 text, so not a gradebook grade-all wrote "
                             f"(it looked for the column 'file'): give another --out") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [name for name in COLUMNS if name not in (reader.fieldnames or [])]
    if missing:
        what = "empty" if not reader.fieldnames else "not a gradebook grade-all wrote"
        raise GradebookError(f"{path} is {what}: it has no column {missing[0]!r}. Give the "
                             f"gradebook grade-all wrote, or another --out for a new one")
    return list(reader)


def read_gradebook(path):
    """({file: Entry}, points, partial credit or None) of the gradebook at `path` (none yet:
    ({}, None, None))."""
    if not path.exists():
        return {}, None, None
    entries, points, partial = {}, None, None
    for number_, cells in enumerate(read_rows(path), 2):
        try:
            grades = None
            if cells["results"]:
                grades = Grades(int(cells["seed"]), json.loads(cells["results"]),
                                NOTE.sub("", cells["status"]))
            entries[cells["file"]] = Entry(cells["file"], cells["student"], cells["status"],
                                           grades, cells["sha256"], float(cells["seconds"] or 0))
            points = points or dict((part.split("=")[0], float(part.split("=")[1]))
                                    for part in cells["points"].split(","))
            partial = cells["partial_credit"] == "yes" if partial is None else partial
        except (ValueError, KeyError, IndexError, AttributeError) as error:
            raise GradebookError(f"{path}, line {number_}: the column 'results', 'seed' or "
                                 f"'points' is not what grade-all writes ({error!r})") from None
    return entries, points, partial


def save(path, entries, points, partial_credit):
    """Write the whole gradebook (True), or say why it could not be written this time (False):
    a row that cannot be written is replaced by one that says so."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, restval="")
    writer.writeheader()
    for key in sorted(entries):
        try:
            writer.writerow(row(entries[key], points, partial_credit))
        except Exception as error:  # noqa: BLE001  one row never costs the others
            writer.writerow({"file": neutralise(key), "status": neutralise(
                f"not recorded: this row could not be written ({error!r})")})
    try:
        write_whole(path, buffer.getvalue())
        return True
    except OSError as error:
        print(f"warning: the gradebook {path} could not be written ({error}); grading goes on "
              f"and writes it again after the next submission", file=sys.stderr)
        return False


def newest(notebooks, root):
    """{notebook: note} for the notebooks to grade: of each student's several, the newest (Canvas:
    the highest attachment id; otherwise the latest modification), with a note; the others map
    to None."""
    by_student = collections.defaultdict(list)
    chosen = {}
    for notebook, relative in notebooks.items():
        student = owner(relative).student
        if student is None:
            chosen[notebook] = ""
        else:
            by_student[student].append(notebook)
    for student, theirs in by_student.items():
        def when(notebook):
            found = owner(notebooks[notebook])
            try:
                modified = os.lstat(notebook).st_mtime_ns
            except OSError:
                modified = 0
            return (found.attachment or 0, modified, notebooks[notebook])
        theirs.sort(key=when)
        for notebook in theirs[:-1]:
            chosen[notebook] = None
        chosen[theirs[-1]] = (f"; the newest of {len(theirs)} notebooks from student {student}"
                              if len(theirs) > 1 else "")
    return chosen


def grade_all(submissions, out, *, jobs=2, force=False, limits=LIMITS, seed=None, points=None,
              partial_credit=None, only=None, feedback=None):
    """Grade every *.ipynb under `submissions` into the CSV gradebook `out` (see the module),
    each within `limits` (a grading.limits.Limits)."""
    root = submissions.resolve()
    entries, kept_points, kept_partial = read_gradebook(out)
    points = points or kept_points or DEFAULT_POINTS
    partial_credit = bool(kept_partial if partial_credit is None else partial_credit)
    notebooks = {Path(p): os.path.relpath(p, root) for p in find_notebooks(root)}
    keys = {notebook: escape_name(relative) for notebook, relative in notebooks.items()}
    seeds = collections.Counter(entry.grades.seed for entry in entries.values() if entry.grades)
    kept_seed = seeds.most_common(1)[0][0] if seeds else None
    if seed is not None and kept_seed is not None and seed != kept_seed:
        if only is not None:
            raise GradebookError(f"--only grades one notebook with the gradebook's seed "
                                 f"{kept_seed}; --seed {seed} would give it other hidden inputs "
                                 f"than its class: leave out --seed, or --only to regrade all")
        print(f"--seed {seed} is not the gradebook's seed {kept_seed}: every notebook is graded "
              f"again (a class shares one set of hidden inputs)")
        force = True
    seed = seed if seed is not None else kept_seed
    seed = secrets.randbelow(2 ** 31) if seed is None else seed

    chosen = newest(notebooks, root)
    hashes = {notebook: digest(notebook) for notebook in notebooks}
    for key in set(entries) - set(keys.values()):  # kept, not exported or summarised
        if entries[key].grades is not None:
            entries[key].status = f"{entries[key].grades.status}; {GONE}: kept from a run before"
    todo = []
    for notebook, note in chosen.items():
        key, student = keys[notebook], owner(notebooks[notebook]).student or ""
        if note is None:  # an older notebook of a student: a row that says which one counts
            newer = next(keys[n] for n, other in chosen.items() if other is not None
                         and owner(notebooks[n]).student == student)
            entries[key] = Entry(key, student, f"not graded: student {student}'s newer "
                                 f"notebook {newer} is graded", None, hashes[notebook])
            continue
        known = entries.get(key)
        if known is not None and known.grades is not None:
            known.status, known.student = known.grades.status + note, student
        if only is not None:
            if Path(only).resolve() == notebook.resolve():
                todo.append((notebook, note))
        elif (force or known is None or known.grades is None or known.sha256 != hashes[notebook]
              or known.grades.status.startswith(GRADER_FAILED)):
            todo.append((notebook, note))
    if only is not None and not todo:
        raise GradebookError(f"--only {only}: no notebook to grade there among the "
                             f"{len(notebooks)} under {submissions}")
    jobs = max(1, min(jobs, len(todo)))
    print(f"{len(notebooks)} notebooks, {len(notebooks) - len(todo)} already graded or "
          f"superseded, {len(todo)} to grade with {jobs} jobs (seed {seed})")
    fingerprint = grader_fingerprint()
    if todo:
        with Sandbox(limits.memory_limit_mb) as sandbox, \
                concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            hidden = HiddenInputs(seed, sandbox)
            print(sandbox.protections_line())
            try:
                futures = {pool.submit(grade, notebook, hidden, sandbox, limits): (notebook, note)
                           for notebook, note in todo}
                for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                                   unit="notebook"):  # rows arrive here, in this one thread
                    (grades, seconds), now = future.result(), grader_fingerprint()
                    if now != fingerprint:
                        pool.shutdown(cancel_futures=True)
                        changed = sorted(path for path in set(now) | set(fingerprint)
                                         if now.get(path) != fingerprint.get(path))
                        raise GraderChanged(f"grader files changed during the run: "
                                            f"{', '.join(changed)}. Grading stopped; the "
                                            f"gradebook keeps the rows graded before. Restore "
                                            f"the files (git status) and run again.")
                    notebook, note = futures[future]
                    key = keys[notebook]
                    entries[key] = Entry(key, owner(notebooks[notebook]).student or "",
                                         grades.status + note, grades, hashes[notebook], seconds)
                    save(out, entries, points, partial_credit)
            finally:
                pool.shutdown(cancel_futures=True)
    if not save(out, entries, points, partial_credit):
        raise OSError(f"the gradebook {out} could not be written (above)")
    present = [entries[key] for key in keys.values() if key in entries]  # --only: not all
    graded = [entry.grades for entry in present if counts(entry.status)]
    try:
        summary = write_summary(out, graded, points, partial_credit, len(present) - len(graded))
        print(f"gradebook: {out}; class summary: {summary[0]}, {summary[1]}")
    except (OSError, ValueError) as error:  # the gradebook is written: say so, and go on
        print(f"gradebook: {out}; warning: the class summary could not be written ({error})",
              file=sys.stderr)
    if feedback is not None:
        written = write_feedback(feedback, entries, chosen, keys, points, partial_credit, limits)
        print(f"feedback: {written} files in {feedback}")


def write_feedback(folder, entries, chosen, keys, points, partial_credit, limits):
    """One Markdown file per submission graded in the folder: folder/<student or file stem>.md."""
    folder.mkdir(parents=True, exist_ok=True)
    used = collections.Counter()
    for notebook, note in sorted(chosen.items()):
        entry = entries.get(keys[notebook])
        if note is None or entry is None or entry.grades is None:
            continue
        stem = entry.student or escape_name(notebook.stem)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).lstrip(".") or "_"
        used[stem] += 1
        name = stem if used[stem] == 1 else f"{stem}-{used[stem]}"
        title = (f"{entry.file}" + (f" (student {entry.student})" if entry.student else ""))
        command = repeat_command(escape_name(str(notebook)), entry.grades.seed, limits)
        try:
            write_whole(folder / f"{name}.md", feedback_markdown(entry.grades, title, points,
                                                                 partial_credit, command))
        except OSError as error:  # one file never costs the others
            print(f"warning: {folder / name}.md could not be written ({error})", file=sys.stderr)
    return sum(used.values())
