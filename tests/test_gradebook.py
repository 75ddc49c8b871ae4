"""The gradebook and the LMS exports without grading anything: rows scored from Grades made
here, every cell safe in a spreadsheet, file names of any bytes kept, files written whole or not
at all, and each bad file stopped with a sentence that names it and the column looked for.
(tests/test_grading_lms.py grades real class folders.)"""
import csv
import io
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grading import lms
from grading.__main__ import main
from grading.cells import FORMULA_STARTS, escape_name, neutralise, unescape_name, write_whole
from grading.gradebook import COLUMNS, Entry, read_gradebook, save
from grading.lms import owner
from grading.plans import check_names
from grading.results import DEFAULT_POINTS, Grades

CANVAS_HEADER = ("Student,ID,SIS User ID,SIS Login ID,Section,Style transfer (4242),"
                 "Quiz 1 (17),Current Score,Final Score")
MOODLE_HEADER = ("Identifier,Full name,Email address,Status,Grade,Maximum Grade,"
                 "Grade can be changed,Last modified (submission),Last modified (grade),"
                 "Feedback comments")


def grades_failing(failures=(), seed=3):
    """Grades whose checks all pass but `failures` ({(function, check): reason})."""
    results = {name: dict.fromkeys(checks) for name, checks in check_names().items()}
    for (function, check), reason in dict(failures).items():
        results[function][check] = reason
    return Grades(seed, results)


def read_csv(path):
    with open(path, newline="", encoding="utf-8-sig") as file:
        return list(csv.reader(file))


# ----- cells

@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_that_would_start_a_formula_is_neutralised(text):
    assert neutralise(text) == "'" + text


def test_other_cells_and_numbers_are_left_as_they_are():
    assert neutralise("gram_matrix: =1") == "gram_matrix: =1" and neutralise(-3) == -3


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_any_file_name_escapes_to_printable_text_and_back(raw):
    name = os.fsdecode(raw)
    escaped = escape_name(name)
    assert escaped.isprintable() and not escaped.startswith(FORMULA_STARTS)
    escaped.encode("utf-8")  # a CSV in UTF-8 can hold it
    assert os.fsencode(unescape_name(escaped)) == raw


def test_a_file_is_replaced_whole_and_no_temporary_file_is_left(tmp_path):
    path = tmp_path / "grades.csv"
    write_whole(path, "old")
    with pytest.raises(TypeError):
        write_whole(path, 12)  # fails while writing
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["grades.csv"]


# ----- who a submission belongs to

@pytest.mark.parametrize("relative, student, attachment, late", [
    ("doejane_1001_50011_nst_assignment.ipynb", "1001", 50011, False),
    ("roerichard_LATE_1002_50021_nst_assignment-1.ipynb", "1002", 50021, True),
    ("Jane Doe_301_assignsubmission_file_/nst_assignment.ipynb", "301", None, False),
    ("Jane Doe_301_assignsubmission_file_/work/my_1_2_3.ipynb", "301", None, False),
    ("nst_assignment.ipynb", None, None, False),
    ("group_a/nst_assignment.ipynb", None, None, False),
])
def test_the_student_is_read_from_canvas_and_moodle_download_names(relative, student,
                                                                    attachment, late):
    found = owner(relative)
    assert (found.student, found.attachment, found.late) == (student, attachment, late)


# ----- rows and their scores

def test_a_row_has_numeric_points_all_or_nothing_or_with_partial_credit(tmp_path):
    grades = grades_failing({("gram_matrix", "matches_numpy_on_hidden_input_2"): "gram_matrix: x",
                             ("total_cost", "works_on_tensors"): "total_cost: y"})
    points = {**DEFAULT_POINTS, "total_cost": 30, "model_nn": 10}
    for partial, expected in ((False, {"gram_matrix": "0", "total_cost": "0", "score": "50"}),
                              (True, {"gram_matrix": "16", "total_cost": "25.71",
                                      "score": "91.71"})):
        path = tmp_path / f"{partial}.csv"
        assert save(path, {"a.ipynb": Entry("a.ipynb", "", "graded", grades, "0" * 64)},
                    points, partial)
        [row] = csv.DictReader(open(path, newline="", encoding="utf-8"))
        assert {key: row[key] for key in expected} == expected
        assert row["max_score"] == "100" and row["model_nn"] == "10"
        assert row["errors"] == "gram_matrix: x | total_cost: y"
        entries, kept_points, kept_partial = read_gradebook(path)  # read back: the same
        assert entries["a.ipynb"].grades == grades
        assert (kept_points, kept_partial) == (points, partial)


def test_a_status_note_is_read_back_apart_from_the_grades_status(tmp_path):
    path = tmp_path / "grades.csv"
    note = "; the newest of 2 notebooks from student 7"
    assert save(path, {"a": Entry("a", "7", "timed out: x" + note, grades_failing())},
                DEFAULT_POINTS, False)
    entries, _, _ = read_gradebook(path)
    assert entries["a"].status == "timed out: x" + note
    assert entries["a"].grades.status == "timed out: x"


def test_only_a_score_that_is_the_students_grade_is_exported(tmp_path, capsys):
    every_check = {(name, check): f"{name}: no" for name, checks in check_names().items()
                   for check in checks}
    failed = grades_failing(every_check)
    failed.status = "grader failed: the sandbox failed (x); the next run grades it again"
    unreadable = grades_failing(every_check)
    unreadable.status = "unreadable: the notebook u could not be read: not JSON"
    entries = {"a": Entry("a", "1001", "graded", grades_failing()),
               "g": Entry("g", "1002", failed.status, failed),
               "h": Entry("h", "1003", "graded; no longer in the class folder: kept from a run "
                          "before", grades_failing()),
               "u": Entry("u", "9999", unreadable.status, unreadable)}
    save(tmp_path / "grades.csv", entries, DEFAULT_POINTS, False)
    canvas = canvas_file(tmp_path / "canvas.csv", CANVAS_ROWS[0],
                         *(CANVAS_ROWS[2].replace("9999", student) for student in
                           ("1002", "1003", "9999")))
    main(["export", "canvas", str(tmp_path / "grades.csv"), "--gradebook", str(canvas),
          "--assignment", "Style transfer", "--out", str(tmp_path / "import.csv")])
    assert [row[5] for row in read_csv(tmp_path / "import.csv")[2:]] == ["100", "", "", "0"]
    assert "no graded submission (left as they were): Canvas ID 1002, 1003" in \
        capsys.readouterr().out


def test_a_row_that_cannot_be_written_says_so_and_costs_no_other(tmp_path):
    class Broken:
        seed = 1

        def points(self, *args):
            raise RuntimeError("cannot score")

    entries = {"a.ipynb": Entry("a.ipynb", "", "graded", grades_failing()),
               "b.ipynb": Entry("b.ipynb", "", "graded", Broken()),
               "c.ipynb": Entry("c.ipynb", "", "graded", grades_failing())}
    assert save(tmp_path / "grades.csv", entries, DEFAULT_POINTS, False)
    rows = {row["file"]: row for row in csv.DictReader(open(tmp_path / "grades.csv"))}
    assert rows["a.ipynb"]["score"] == rows["c.ipynb"]["score"] == "100"
    assert rows["b.ipynb"]["status"].startswith("not recorded: ") and "cannot score" in \
        rows["b.ipynb"]["status"]


def test_a_gradebook_that_cannot_be_written_is_said_and_leaves_nothing(tmp_path, capsys):
    entries = {"a.ipynb": Entry("a.ipynb", "", "graded", grades_failing())}
    assert not save(tmp_path / "missing" / "grades.csv", entries, DEFAULT_POINTS, False)
    assert "could not be written" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content, words", [
    (b"", "is empty: it has no column 'file'"),
    (b"file,score\nx.ipynb,4/5\n", "has no column 'student'"),
    ("file;student\n".encode("utf-16"), "is not UTF-8 text"),
])
def test_grade_all_stops_on_a_file_that_is_not_its_gradebook_and_writes_nothing(
        tmp_path, capsys, content, words):
    (tmp_path / "class").mkdir()
    gradebook = tmp_path / "grades.csv"
    gradebook.write_bytes(content)
    with pytest.raises(SystemExit) as stopped:
        main(["grade-all", str(tmp_path / "class"), "--out", str(gradebook)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert str(gradebook) in error and words in error, error
    assert gradebook.read_bytes() == content and sorted(os.listdir(tmp_path)) == [
        "class", "grades.csv"]


# ----- exports, from a gradebook made here

@pytest.fixture
def gradebook(tmp_path):
    """Students 1001 (100), 1002 (80, a reason with a formula and HTML), 1005 (not in the LMS
    files), 1003 superseded, and a notebook of no student."""
    wrong = grades_failing({("gram_matrix", check): "gram_matrix: =HYPERLINK(\"x\") <b>"
                            for check in check_names()["gram_matrix"]})
    entries = {"a": Entry("a", "1001", "graded", grades_failing()),
               "b": Entry("b", "1002", "graded", wrong),
               "c": Entry("c", "1003", "not graded: student 1003's newer notebook d is graded"),
               "e": Entry("e", "1005", "graded", grades_failing()),
               "f": Entry("f", "", "graded", wrong)}
    path = tmp_path / "grades.csv"
    assert save(path, entries, DEFAULT_POINTS, False)
    return path


def canvas_file(path, *rows, bom=True):
    text = "\r\n".join([CANVAS_HEADER, "    Points Possible,,,,,100.00,10.00,(read only),"
                        "(read only)", *rows]) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


CANVAS_ROWS = ['"Doe, Jane",1001,jd01,jane@example.edu,NST 101,,8.00,80,80',
               '"Lee, Bo",1002,,bo@example.edu,"NST 101, ""B""",55,-1,=1,',
               '"Student, Test",9999,,,NST 101,,,,']


def test_canvas_export_fills_one_column_and_keeps_every_other_byte(gradebook, tmp_path,
                                                                   capsys):
    canvas = canvas_file(tmp_path / "canvas.csv", *CANVAS_ROWS)
    out = tmp_path / "import.csv"
    assert main(["export", "canvas", str(gradebook), "--gradebook", str(canvas),
                 "--assignment", "Style transfer", "--out", str(out)]) == 0
    before, after = read_csv(canvas), read_csv(out)
    column = before[0].index("Style transfer (4242)")
    assert len(after) == len(before)
    for old, new in zip(before, after):
        assert new[:column] + new[column + 1:] == old[:column] + old[column + 1:]
    assert [row[column] for row in after[2:]] == ["100", "80", ""]
    written = out.read_bytes()
    assert written.startswith(b"\xef\xbb\xbf") and written.count(b"\r\n") == 5
    assert written == canvas.read_bytes().replace(b"NST 101,,8.00", b"NST 101,100,8.00").replace(
        b'""B""",55,-1', b'""B""",80,-1')  # Canvas's own cells byte for byte, =1 and -1 too
    printed = capsys.readouterr().out
    assert "no graded submission (left as they were): Canvas ID 9999" in printed
    assert "graded but not in the LMS file (not exported): e (1005)" in printed


def test_canvas_export_says_when_the_points_possible_differ(gradebook, tmp_path, capsys):
    canvas = canvas_file(tmp_path / "canvas.csv", *CANVAS_ROWS)
    canvas.write_bytes(canvas.read_bytes().replace(b",,,,,100.00,", b",,,,,50.00,"))
    with pytest.raises(SystemExit):
        main(["export", "canvas", str(gradebook), "--gradebook", str(canvas), "--assignment",
              "Style transfer (4242)", "--out", str(tmp_path / "import.csv")])
    error = capsys.readouterr().err
    assert "worth 50 points" in error and "--points summing to 50" in error
    assert not (tmp_path / "import.csv").exists()


MOODLE_ROWS = [
    'Participant 1001,Jane Doe,jane@example.edu,Submitted for grading,,100.00,Yes,'
    '"Monday, 1 December 2026, 9:00 AM",-,',
    'Participant 1002,Bo Lee,bo@example.edu,Submitted for grading,,100.00,Yes,'
    '"Monday, 1 December 2026, 9:05 AM",-,',
    'Participant 1003,Ann Smith,ann@example.edu,No submission,,100.00,Yes,-,-,',
    'Participant 1004,Kai Park,kai@example.edu,Submitted for grading,,100.00,No,-,-,Done.']


def test_moodle_export_fills_grade_and_feedback_of_each_participant(gradebook, tmp_path, capsys):
    worksheet = tmp_path / "worksheet.csv"
    worksheet.write_text("\n".join([MOODLE_HEADER, *MOODLE_ROWS]) + "\n", encoding="utf-8")
    out = tmp_path / "upload.csv"
    assert main(["export", "moodle", str(gradebook), "--worksheet", str(worksheet),
                 "--out", str(out)]) == 0
    before, after = read_csv(worksheet), read_csv(out)
    grade, comments = before[0].index("Grade"), before[0].index("Feedback comments")
    for old, new in zip(before, after, strict=True):
        keep = [i for i in range(len(old)) if i not in (grade, comments)]
        assert [new[i] for i in keep] == [old[i] for i in keep]
    assert [row[grade] for row in after[1:]] == ["100", "80", "", ""]
    assert after[1][comments].startswith("100 of 100 points")
    feedback = after[2][comments]
    assert feedback.startswith("80 of 100 points") and "gram_matrix 0" in feedback
    assert '=HYPERLINK("x") &lt;b&gt;' in feedback  # Moodle reads HTML: escaped, never markup
    assert after[3][comments] == "" and after[4][comments] == "Done."
    printed = capsys.readouterr().out
    assert "no graded submission (left as they were): Participant 1003, 1004" in printed


def test_a_moodle_row_whose_grade_cannot_be_changed_is_left_and_said(tmp_path, capsys):
    entries = {"d": Entry("d", "1004", "graded", grades_failing())}
    save(tmp_path / "grades.csv", entries, DEFAULT_POINTS, False)
    worksheet = tmp_path / "worksheet.csv"
    worksheet.write_text("\n".join([MOODLE_HEADER, MOODLE_ROWS[3]]) + "\n", encoding="utf-8")
    main(["export", "moodle", str(tmp_path / "grades.csv"), "--worksheet", str(worksheet),
          "--out", str(tmp_path / "upload.csv")])
    assert (tmp_path / "upload.csv").read_bytes() == worksheet.read_bytes()
    assert "Participant 1004: Moodle says its grade cannot be changed" in capsys.readouterr().out


@pytest.mark.parametrize("lms_name, content, words", [
    ("canvas", b"", "is empty: expected a CSV file with a column 'Student'"),
    ("canvas", b"Name,Score\nJane,1\n", "has no column 'Student'"),
    ("canvas", CANVAS_HEADER.encode() + b"\n", "has no column 'Homework'"),
    ("canvas", "Student,ID\nJos\xe9,1\n".encode("latin-1"), "is not UTF-8 text"),
    ("moodle", b"Identifier,Full name,Grade\n", "has no column 'Feedback comments'"),
    ("moodle", b'Identifier,Grade,Feedback comments\n"Participant 1,,\n', "is not a CSV file"),
])
def test_an_lms_file_that_is_not_the_expected_csv_stops_and_writes_nothing(
        gradebook, tmp_path, capsys, lms_name, content, words):
    given = tmp_path / "lms.csv"
    given.write_bytes(content)
    out = tmp_path / "out.csv"
    options = (["--gradebook", str(given), "--assignment", "Homework"] if lms_name == "canvas"
               else ["--worksheet", str(given)])
    with pytest.raises(SystemExit) as stopped:
        main(["export", lms_name, str(gradebook), *options, "--out", str(out)])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and str(given) in error and words in error, error
    assert not out.exists()


def test_an_export_from_a_file_that_is_not_a_gradebook_stops(tmp_path, capsys):
    not_gradebook = tmp_path / "grades.csv"
    not_gradebook.write_text("file,score\nx.ipynb,4/5\n")
    canvas = canvas_file(tmp_path / "canvas.csv", *CANVAS_ROWS)
    with pytest.raises(SystemExit):
        main(["export", "canvas", str(not_gradebook), "--gradebook", str(canvas),
              "--assignment", "Style transfer", "--out", str(tmp_path / "out.csv")])
    assert f"{not_gradebook} is not a gradebook" in capsys.readouterr().err


def test_no_cell_the_gradebook_writes_starts_a_formula(gradebook):
    for row in list(csv.reader(io.StringIO(gradebook.read_text())))[1:]:
        assert not any(cell.startswith(FORMULA_STARTS) for cell in row), row
    assert set(next(csv.reader(io.StringIO(gradebook.read_text())))) == set(COLUMNS)


def test_records_keep_each_fields_place(tmp_path):
    text = 'a,"b ""q"", c"\r\n\r\n,x\n'
    rows = lms.records(text)
    assert [fields for fields, _ in rows] == [["a", 'b "q", c'], ["", "x"]]
    assert [text[start:end] for start, end in rows[0][1]] == ["a", '"b ""q"", c"']
