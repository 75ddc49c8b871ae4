"""Grading a class: each kind of broken submission and each attack fails only what it breaks,
the student release fails every function cleanly, and `python -m grading grade-all` keeps a
trustworthy gradebook. The submissions (tests/submissions.py) are graded in a copy of the project.
"""
import csv
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from grading.gradebook import Entry, digest, save
from grading.notebook import GRADED_FUNCTIONS
from grading.plans import check_names
from grading.results import DEFAULT_POINTS, Grades
from submissions import (ATTACKS, BROKEN, KEYRING_SECRET, make_release, plant_graders_key,
                         project_copy, with_graded_cell_replaced)

TIME_LIMIT = "30"  # seconds per graded cell or call; model_nn needs about 10 under load


def grade_all(folder, gradebook, *options, project=ROOT):
    finished = subprocess.run(
        [sys.executable, "-m", "grading", "grade-all", str(folder), "--out", str(gradebook),
         "--time-limit", TIME_LIMIT, *options],
        cwd=project, capture_output=True, text=True, timeout=1800)
    assert finished.returncode == 0, finished.stderr
    with open(gradebook, newline="") as file:
        return {row["file"]: row for row in csv.DictReader(file)}, finished.stdout


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    """A class: the solution, the student release, every broken submission and every attack."""
    folder = tmp_path_factory.mktemp("submissions")
    shutil.copy(ROOT / "nst_assignment.ipynb", folder / "solution.ipynb")
    make_release(folder / "release.ipynb")
    for kind, (function, source) in {**BROKEN, **ATTACKS}.items():
        with_graded_cell_replaced(function, source, folder / f"{kind}.ipynb")
    return folder


@pytest.fixture(scope="module")
def gradebook(class_folder, tmp_path_factory):
    plant_graders_key()  # the grader's session keyring holds a key no row may show
    path = tmp_path_factory.mktemp("grades") / "grades.csv"
    project = project_copy(tmp_path_factory.mktemp("project"))
    rows, _ = grade_all(class_folder, path, "--jobs", "2", "--memory-limit", "2000",
                        project=project)
    return path, rows


def test_solution_passes_every_function(gradebook):
    _, rows = gradebook
    assert rows["solution.ipynb"]["score"] == "100", rows["solution.ipynb"]


def test_release_fails_every_function_quickly(gradebook):
    _, rows = gradebook
    row = rows["release.ipynb"]
    assert row["score"] == "0" and all(row[name] == "0" for name in GRADED_FUNCTIONS)
    assert float(row["seconds"]) < 60, row


def test_the_gradebook_holds_no_key_and_no_control_character(gradebook):
    text = gradebook[0].read_text(encoding="utf-8")
    assert KEYRING_SECRET not in text and not set(text) & {"\x1b", "\x85", "\u2028"}
    assert "\r" not in text.replace("\r\n", "")  # csv's own line ends only


@pytest.mark.parametrize("kind", [*BROKEN, *ATTACKS])
def test_broken_submission_fails_only_the_broken_function(gradebook, kind):
    _, rows = gradebook
    row, broken = rows[f"{kind}.ipynb"], {**BROKEN, **ATTACKS}[kind][0]
    assert row[broken] == "0", row
    assert all(row[name] == "20" for name in GRADED_FUNCTIONS if name != broken), row
    assert row["errors"].startswith(broken + ":") and " | " not in row["errors"], row
    assert float(row["seconds"]) < 120, row


EXPECTED_REASONS = {
    "syntax_error": "syntax error at line 4",
    "exception_at_definition": "NameError: name 'ten' is not defined",
    "exception_at_call": "AttributeError",
    "missing_function": "no code cell starts with '# GRADED FUNCTION: model_nn'",
    "renamed_function": "does not define a function named gram_matrix (it defines: gram)",
    "wrong_signature": "wrong signature: expected total_cost(J_content, J_style, alpha = 10",
    "returns_numpy_value": "returned numpy.float32; it must return a TensorFlow tensor",
    "cell_never_finishes": f"its cell did not finish within {float(TIME_LIMIT)} s",
    "call_never_finishes": f"a call did not finish within {float(TIME_LIMIT)} s",
    "top_level_code_crashes": "FileNotFoundError",
    "kills_its_process": "the process running total_cost was killed by signal 9 while its cell ran",
    "eats_memory": "more than the 2000 MB of memory",
}


@pytest.mark.parametrize("kind", EXPECTED_REASONS)
def test_broken_submission_gets_a_message_naming_the_problem(gradebook, kind):
    _, rows = gradebook
    assert EXPECTED_REASONS[kind] in rows[f"{kind}.ipynb"]["errors"]


def test_gradebook_has_one_row_per_submission_and_rerun_skips_them(gradebook, class_folder):
    path, rows = gradebook
    assert set(rows) == {p.name for p in class_folder.glob("*.ipynb")}
    before = path.read_text()
    again, printed = grade_all(class_folder, path, "--jobs", "2")
    assert f"{len(rows)} already graded or superseded, 0 to grade" in printed
    assert path.read_text() == before


def test_force_regrades_submissions_already_in_the_gradebook(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    release = make_release(folder / "release.ipynb")
    path = tmp_path / "grades.csv"
    passing = Grades(1, {name: dict.fromkeys(checks) for name, checks in check_names().items()})
    fake = Entry("release.ipynb", "", "graded", passing, digest(release))  # unchanged: kept
    assert save(path, {"release.ipynb": fake}, DEFAULT_POINTS, False)
    kept, _ = grade_all(folder, path)
    assert kept["release.ipynb"]["score"] == "100"
    regraded, _ = grade_all(folder, path, "--force")
    assert regraded["release.ipynb"]["score"] == "0"


def test_a_row_the_grader_failed_on_is_graded_again_by_the_next_run(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    release = make_release(folder / "release.ipynb")
    path = tmp_path / "grades.csv"
    failed = Grades(1, {name: dict.fromkeys(checks, f"{name}: not graded")
                        for name, checks in check_names().items()},
                    "grader failed: the sandbox failed (a test)")
    assert save(path, {"release.ipynb": Entry("release.ipynb", "", failed.status, failed,
                                              digest(release))}, DEFAULT_POINTS, False)
    rows, printed = grade_all(folder, path)
    assert "1 to grade" in printed and rows["release.ipynb"]["status"] == "graded"


def grading_summary(notebook):
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests"), "-m", "graded", "-q",
         "-p", "no:cacheprovider", "--notebook", str(notebook), "--time-limit", TIME_LIMIT],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    return finished.stdout[finished.stdout.index("graded functions"):]


def test_summary_counts_passing_functions_and_names_first_failure(tmp_path):
    notebook = with_graded_cell_replaced("gram_matrix", BROKEN["syntax_error"][1],
                                         tmp_path / "student.ipynb")
    summary = grading_summary(notebook)
    assert "4/5 graded functions pass" in summary
    assert "FAIL  gram_matrix: 5 of 5 checks fail; first: test_gram_matrix[" in summary
    assert "syntax error at line 4" in summary
    for name in GRADED_FUNCTIONS:
        if name != "gram_matrix":
            assert f"PASS  {name}:" in summary


def test_grading_stops_when_a_grader_file_changes_during_the_run(tmp_path):
    project = project_copy(tmp_path / "project")
    folder, gradebook = tmp_path / "class", tmp_path / "grades.csv"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        shutil.copy(ROOT / "nst_assignment.ipynb", folder / f"{name}.ipynb")
    command = [sys.executable, "-m", "grading", "grade-all", str(folder), "--jobs", "1",
               "--out", str(gradebook)]
    grading = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while not gradebook.exists() and grading.poll() is None:  # the first row is written
        time.sleep(0.05)
    with open(project / "grading" / "plans.py", "a") as file:
        file.write("\n# changed while grading\n")
    _, errors = grading.communicate(timeout=600)
    assert grading.returncode == 2 and "grading/plans.py" in errors, errors
    assert "Grading stopped" in errors
    assert gradebook.read_text().count(".ipynb") < 4
