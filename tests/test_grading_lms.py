"""A class graded from Canvas's download and one from Moodle's, into the gradebook, the feedback
files, the class summary and the LMS's own file for its import, with the README's commands. The
class folders hold our notebook, the release, a wrong gram_matrix, a late submission, a student
with two notebooks, a resubmission that changes between two runs and a notebook whose error
message starts with '='. Each module grades its class once (the grading is the slow part)."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from grading.cells import FORMULA_STARTS, unescape_name
from grading.lms import number
from grading.notebook import GRADED_FUNCTIONS
from grading.plans import check_names
from grading.results import GONE, counts
from submissions import BROKEN, cell, make_release, project_copy, with_graded_cell_replaced
from test_gradebook import CANVAS_HEADER, MOODLE_HEADER, read_csv
from test_gradescope_fresh_system import WRONG_GRAM_MATRIX  # A^T A: the wrong product
from test_grading_robustness import grade_all

SEED = "20261201"
FORMULA_ERROR = cell("total_cost", """
def total_cost(J_content, J_style, alpha = 10, beta = 40):
    raise ValueError('=HYPERLINK("http://example.com/","click")')""")
CHECKS = check_names()


def rows_by_file(gradebook):
    with open(gradebook, newline="", encoding="utf-8") as file:
        return {unescape_name(row["file"]): row for row in csv.DictReader(file)}


def passing_checks(row, function):
    return sum(reason is None for reason in json.loads(row["results"])[function].values())


def export(project, *arguments):
    finished = subprocess.run([sys.executable, "-m", "grading", "export", *map(str, arguments)],
                              cwd=project, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def assert_no_cell_starts_a_formula(path, header_rows=1, columns=None):
    for row in read_csv(path)[header_rows:]:
        cells = row if columns is None else [row[i] for i in columns]
        assert not any(value.startswith(FORMULA_STARTS) for value in cells), row


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return project_copy(tmp_path_factory.mktemp("project"))


# ----- Canvas

CANVAS_FILES = {  # name in Canvas's download: what it holds
    "doejane_1001_50011_nst_assignment.ipynb": "ours",
    "roerichard_LATE_1002_50021_nst_assignment.ipynb": "ours",
    "smithann_1003_50031_nst_assignment.ipynb": "release",  # older attachment, newer file
    "smithann_1003_50099_nst_assignment-1.ipynb": "ours",
    "leebo_1004_50041_nst_assignment.ipynb": "wrong gram_matrix",
    "kimsu_1005_50051_nst_assignment.ipynb": "hard-coded content cost",
    "parkkai_1006_50061_nst_assignment.ipynb": "release",  # then ours: the resubmission
    "=1+1.ipynb": "formula error",  # no student: not a Canvas name
}


def write_notebook(path, kind, release):
    if kind == "ours":
        path.write_bytes((ROOT / "nst_assignment.ipynb").read_bytes())
    elif kind == "release":
        path.write_bytes(release.read_bytes())
    elif kind == "wrong gram_matrix":
        with_graded_cell_replaced("gram_matrix", WRONG_GRAM_MATRIX, path)
    elif kind == "hard-coded content cost":
        with_graded_cell_replaced("compute_content_cost",
                                  BROKEN["hard_coded_expected_output"][1], path)
    else:
        with_graded_cell_replaced("total_cost", FORMULA_ERROR, path)


@pytest.fixture(scope="module")
def canvas(tmp_path_factory, project):
    """Graded twice: all or nothing, then, after 1006 resubmits and =1+1.ipynb is taken out of
    the folder, with --partial-credit."""
    top = tmp_path_factory.mktemp("canvas")
    folder, release = top / "submissions", make_release(top / "release.ipynb")
    folder.mkdir()
    for name, kind in CANVAS_FILES.items():
        write_notebook(folder / name, kind, release)
    os.utime(folder / "smithann_1003_50099_nst_assignment-1.ipynb", (1e9, 1e9))
    gradebook, feedback = top / "grades.csv", top / "feedback"
    first, printed_first = grade_all(folder, gradebook, "--seed", SEED, "--feedback", feedback,
                                     project=project)
    first = rows_by_file(gradebook)
    write_notebook(folder / "parkkai_1006_50061_nst_assignment.ipynb", "ours", release)
    (folder / "=1+1.ipynb").unlink()  # its row is kept, and counts no more
    _, printed = grade_all(folder, gradebook, "--partial-credit", "--feedback", feedback,
                           project=project)
    return {"folder": folder, "gradebook": gradebook, "feedback": feedback, "first": first,
            "printed_first": printed_first, "second": rows_by_file(gradebook),
            "printed": printed}


def test_canvas_names_give_each_row_its_student(canvas):
    students = {name: row["student"] for name, row in canvas["first"].items()}
    assert students == dict(zip(CANVAS_FILES, ["1001", "1002", "1003", "1003", "1004", "1005",
                                               "1006", ""]))


def test_exact_points_all_or_nothing(canvas):
    rows = canvas["first"]
    expected = {"doejane_1001_50011_nst_assignment.ipynb": "100",
                "roerichard_LATE_1002_50021_nst_assignment.ipynb": "100",
                "smithann_1003_50099_nst_assignment-1.ipynb": "100",
                "leebo_1004_50041_nst_assignment.ipynb": "80",
                "kimsu_1005_50051_nst_assignment.ipynb": "80",
                "parkkai_1006_50061_nst_assignment.ipynb": "0",
                "=1+1.ipynb": "80"}
    assert {name: rows[name]["score"] for name in expected} == expected
    assert all(rows[name]["max_score"] == "100" for name in expected)
    assert rows["leebo_1004_50041_nst_assignment.ipynb"]["gram_matrix"] == "0"
    assert rows["=1+1.ipynb"]["total_cost"] == "0"
    assert all(rows[name]["seed"] == SEED for name in expected)


def test_exact_points_with_partial_credit_rescored_without_regrading(canvas):
    rows = canvas["second"]
    kimsu = rows["kimsu_1005_50051_nst_assignment.ipynb"]  # passes the Expected Output only
    assert kimsu["compute_content_cost"] == number(20 / len(CHECKS["compute_content_cost"]))
    assert kimsu["score"] == number(80 + 20 / len(CHECKS["compute_content_cost"]))
    for name, row in rows.items():
        if row["results"]:
            shares = {f: number(20 * passing_checks(row, f) / len(CHECKS[f]))
                      for f in GRADED_FUNCTIONS}
            assert {f: row[f] for f in GRADED_FUNCTIONS} == shares, name
            assert row["partial_credit"] == "yes"
    assert "1 to grade" in canvas["printed"]  # only the resubmission
    unchanged = [n for n in rows if n != "parkkai_1006_50061_nst_assignment.ipynb"]
    assert all(rows[n]["sha256"] == canvas["first"][n]["sha256"] for n in unchanged)


def test_a_notebook_taken_out_of_the_folder_keeps_its_row_and_counts_no_more(canvas):
    before, after = canvas["first"]["=1+1.ipynb"], canvas["second"]["=1+1.ipynb"]
    assert after["status"] == f"graded; {GONE}: kept from a run before"
    assert after["results"] == before["results"] and not counts(after["status"])


def test_a_changed_resubmission_is_regraded_without_force(canvas):
    name = "parkkai_1006_50061_nst_assignment.ipynb"
    before, after = canvas["first"][name], canvas["second"][name]
    assert before["score"] == "0" and after["score"] == "100"
    assert before["sha256"] != after["sha256"] and after["seed"] == SEED  # the class's seed


def test_of_two_notebooks_the_highest_attachment_id_is_graded(canvas):
    rows = canvas["first"]
    newest = rows["smithann_1003_50099_nst_assignment-1.ipynb"]
    assert newest["status"] == "graded; the newest of 2 notebooks from student 1003"
    older = rows["smithann_1003_50031_nst_assignment.ipynb"]
    assert older["status"] == ("not graded: student 1003's newer notebook "
                               "smithann_1003_50099_nst_assignment-1.ipynb is graded")
    assert older["score"] == "" and older["results"] == ""


def test_a_reason_that_starts_with_a_formula_stays_in_its_words_and_no_cell_is_one(canvas):
    row = canvas["first"]["=1+1.ipynb"]
    assert 'ValueError: =HYPERLINK("http://example.com/","click")' in row["errors"]
    raw = {row["file"] for row in csv.DictReader(open(canvas["gradebook"], newline=""))}
    assert "\\x3d1+1.ipynb" in raw  # the name, escaped: no formula, and read back as it was
    assert_no_cell_starts_a_formula(canvas["gradebook"])


def test_every_submission_has_a_feedback_file_with_every_check(canvas):
    files = {path.name for path in canvas["feedback"].iterdir()}
    assert files == {f"{student}.md" for student in ("1001", "1002", "1003", "1004", "1005",
                                                     "1006")} | {"_x3d1_1.md"}
    row = canvas["second"]["leebo_1004_50041_nst_assignment.ipynb"]
    text = (canvas["feedback"] / "1004.md").read_text()
    assert f"**{row['score']} of 100 points**" in text
    results = json.loads(row["results"])
    for function, checks in results.items():
        assert f"## {function}: {row[function]} of 20 points" in text
        for check, reason in checks.items():
            if reason is None:
                assert f"pass `test_{function}[{check}]`" in text or "All " in text
            else:
                assert f"- FAIL `test_{function}[{check}]`:\n\n      {reason}\n" in text
    assert f"--seed {SEED} --time-limit 30 --memory-limit 4096" in text
    assert str(canvas["folder"] / "leebo_1004_50041_nst_assignment.ipynb") in text


def test_the_summary_counts_the_class(canvas):
    rows = [row for row in canvas["second"].values() if counts(row["status"])]
    summary = canvas["gradebook"].with_name("grades.summary.md").read_text()
    assert f"{len(rows)} submissions graded, 1 not graded" in summary
    for function in GRADED_FUNCTIONS:
        passed = sum(row[function] == "20" for row in rows)
        assert f"| {function} | {passed} of {len(rows)} |" in summary
        for check in CHECKS[function]:
            passed = sum(json.loads(row["results"])[function][check] is None for row in rows)
            assert f"| test_{function}[{check}] | {passed} of {len(rows)} |" in summary
    full = sum(float(row["score"]) >= 90 for row in rows)
    assert f"| 90 to 100 | {full} |" in summary
    picture = canvas["gradebook"].with_name("grades.summary.png").read_bytes()
    assert picture.startswith(b"\x89PNG")


def test_the_canvas_file_is_filled_for_its_import_and_kept_cell_by_cell(canvas, project,
                                                                        tmp_path):
    lms_file = tmp_path / "canvas.csv"
    lms_file.write_bytes(b"\xef\xbb\xbf" + "\r\n".join([
        CANVAS_HEADER,
        "    Points Possible,,,,,100.00,10.00,(read only),(read only)",
        '"Doe, Jane",1001,jd01,jane@example.edu,NST 101,,9.00,90,90',
        '"Roe, Richard",1002,rr02,richard@example.edu,NST 101,,-,=0,',
        '"Smith, Ann",1003,as03,ann@example.edu,NST 102,,7.00,70,70',
        '"Lee, Bo",1004,bl04,bo@example.edu,NST 102,,,,',
        '"Park, Kai",1006,kp06,kai@example.edu,NST 102,,,,',
        '"Student, Test",9999,,,NST 101,,,,', ""]).encode("utf-8"))
    out = tmp_path / "import.csv"
    printed = export(project, "canvas", canvas["gradebook"], "--gradebook", lms_file,
                     "--assignment", "Style transfer", "--out", out)
    before, after = read_csv(lms_file), read_csv(out)
    column = before[0].index("Style transfer (4242)")
    scores = {row["student"]: row["score"] for row in canvas["second"].values()
              if counts(row["status"]) and row["student"]}
    assert len(before) == len(after)
    for old, new in zip(before, after):
        assert len(old) == len(new)
        for index, (was, now) in enumerate(zip(old, new)):
            if index != column or old[1] not in scores:
                assert now == was, (old, new)
            else:
                assert now == scores[old[1]], (old, new)
    assert "no graded submission (left as they were): Canvas ID 9999" in printed
    assert "kimsu_1005_50051_nst_assignment.ipynb (1005)" in printed
    assert_no_cell_starts_a_formula(out, 2, [column])


# ----- Moodle

@pytest.fixture(scope="module")
def moodle(tmp_path_factory, project):
    top = tmp_path_factory.mktemp("moodle")
    folder, release = top / "submissions", make_release(top / "release.ipynb")
    files = {"Jane Doe_301_assignsubmission_file_/nst_assignment.ipynb": "ours",
             "Bo Lee_302_assignsubmission_file_/nst_assignment.ipynb": "wrong gram_matrix",
             "Ann Smith_303_assignsubmission_file_/draft.ipynb": "ours",
             "Ann Smith_303_assignsubmission_file_/nst_assignment.ipynb": "release"}
    for name, kind in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_notebook(folder / name, kind, release)
    os.utime(folder / "Ann Smith_303_assignsubmission_file_/draft.ipynb", (1e9, 1e9))
    gradebook = top / "grades.csv"
    grade_all(folder, gradebook, "--seed", SEED, "--feedback", top / "feedback",
              project=project)
    return {"gradebook": gradebook, "rows": rows_by_file(gradebook), "folder": folder,
            "feedback": top / "feedback"}


def test_moodle_folders_give_the_participant_and_the_newest_file_is_graded(moodle):
    rows = moodle["rows"]
    ann = "Ann Smith_303_assignsubmission_file_/"
    assert rows[ann + "nst_assignment.ipynb"]["status"] == \
        "graded; the newest of 2 notebooks from student 303"
    assert rows[ann + "draft.ipynb"]["status"].startswith("not graded: student 303's newer")
    assert {row["student"] for row in rows.values()} == {"301", "302", "303"}
    assert {name: row["score"] for name, row in rows.items() if row["score"]} == {
        "Jane Doe_301_assignsubmission_file_/nst_assignment.ipynb": "100",
        "Bo Lee_302_assignsubmission_file_/nst_assignment.ipynb": "80",
        ann + "nst_assignment.ipynb": "0"}
    assert {path.name for path in moodle["feedback"].iterdir()} == {"301.md", "302.md",
                                                                    "303.md"}


def test_the_moodle_worksheet_is_filled_for_its_upload_and_kept_cell_by_cell(moodle, project,
                                                                             tmp_path):
    worksheet = tmp_path / "worksheet.csv"
    worksheet.write_text("\n".join([
        MOODLE_HEADER,
        'Participant 301,Jane Doe,jane@example.edu,Submitted for grading,,100.00,Yes,'
        '"Monday, 1 December 2026, 9:00 AM",-,',
        'Participant 302,Bo Lee,bo@example.edu,Submitted for grading,,100.00,Yes,'
        '"Monday, 1 December 2026, 9:10 AM",-,',
        'Participant 303,Ann Smith,ann@example.edu,Submitted for grading,,100.00,Yes,'
        '"Monday, 1 December 2026, 9:20 AM",-,',
        'Participant 304,Eve Nobody,eve@example.edu,No submission,,100.00,Yes,-,-,', ""]),
        encoding="utf-8")
    out = tmp_path / "upload.csv"
    printed = export(project, "moodle", moodle["gradebook"], "--worksheet", worksheet,
                     "--out", out)
    before, after = read_csv(worksheet), read_csv(out)
    grade, comments = before[0].index("Grade"), before[0].index("Feedback comments")
    rows = {row["student"]: row for row in moodle["rows"].values() if counts(row["status"])}
    for old, new in zip(before[1:], after[1:], strict=True):
        participant = old[0].split()[-1]
        for index, (was, now) in enumerate(zip(old, new, strict=True)):
            if index not in (grade, comments) or participant not in rows:
                assert now == was, (old, new)
        if participant in rows:
            row = rows[participant]
            assert new[grade] == row["score"]
            assert new[comments].startswith(f"{row['score']} of 100 points")
            assert all(f"{f} {row[f]}" in new[comments] for f in GRADED_FUNCTIONS)
    assert "no graded submission (left as they were): Participant 304" in printed
    assert_no_cell_starts_a_formula(out, 1, [grade, comments])


def test_only_grades_one_notebook_again_and_no_other_seed(moodle, project, tmp_path):
    gradebook = tmp_path / "grades.csv"
    gradebook.write_bytes(moodle["gradebook"].read_bytes())
    bo = moodle["folder"] / "Bo Lee_302_assignsubmission_file_" / "nst_assignment.ipynb"
    command = [sys.executable, "-m", "grading", "grade-all", str(moodle["folder"]), "--out",
               str(gradebook), "--only", str(bo)]
    refused = subprocess.run([*command, "--seed", "7"], cwd=project, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and f"the gradebook's seed {SEED}" in refused.stderr
    assert gradebook.read_bytes() == moodle["gradebook"].read_bytes()
    rows, printed = grade_all(moodle["folder"], gradebook, "--only", bo, project=project)
    assert "1 to grade" in printed
    rows = rows_by_file(gradebook)
    for name, row in moodle["rows"].items():
        if name.startswith("Bo Lee"):
            assert rows[name]["results"] == row["results"] and rows[name]["score"] == "80"
        else:
            assert rows[name] == row


# ----- file names of any bytes

def test_a_file_name_that_is_not_utf8_is_graded_with_its_classmates(tmp_path, project):
    folder = tmp_path / "class"
    folder.mkdir()
    release = make_release(tmp_path / "release.ipynb").read_bytes()
    names = [b"a.ipynb", b"b_\xff.ipynb", b"c.ipynb"]
    for name in names:
        with open(os.fsencode(folder) + b"/" + name, "wb") as file:
            file.write(release)
    gradebook = tmp_path / "grades.csv"
    grade_all(folder, gradebook, "--seed", SEED, "--feedback", tmp_path / "feedback",
              project=project)
    rows = rows_by_file(gradebook)
    assert sorted(os.fsencode(name) for name in rows) == names
    assert all(row["status"] == "graded" and row["score"] == "0" for row in rows.values())
    assert "b_\\xff.ipynb" in gradebook.read_text(encoding="utf-8")
    assert len(list((tmp_path / "feedback").iterdir())) == 3
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
