"""Canvas and Moodle: who a downloaded submission belongs to, and the gradebook carried into the
LMS's own file for its import.

    python -m grading export canvas grades.csv --gradebook EXPORT.csv --assignment NAME --out FILE
    python -m grading export moodle grades.csv --worksheet WORKSHEET.csv --out FILE

Download names (docs/lms.md): Canvas's "Download Submissions"
names each file `<name>_[LATE_]<user id>_<attachment id>_<original name>`; Moodle's "Download all
submissions" puts each student's files in a folder
`<Full Name>_<participant id>_assignsubmission_file_`.
The LMS's file is kept byte for byte except the cells we fill (neutralised: grading/cells.py).
"""
import csv
import html
import io
import re
from dataclasses import dataclass

from grading.cells import neutralise, write_whole
from grading.results import counts

CANVAS_NAME = re.compile(r"(?P<name>[^_/]+)_(?P<late>LATE_)?(?P<user>\d+)_(?P<attachment>\d+)_"
                         r"(?P<original>[^/]+)")
MOODLE_FOLDER = re.compile(r"(?P<name>.+)_(?P<participant>\d+)_assignsubmission_file_?")


@dataclass
class Owner:
    """Whose a submission is: the LMS's id of the student (None: not an LMS download name),
    and, for Canvas, the attachment id (larger: submitted later)."""
    student: str = None
    attachment: int = None
    late: bool = False


def owner(relative):
    """The Owner of the submission at `relative` (a path below the class folder, '/'-separated)."""
    parts = relative.split("/")
    for folder in reversed(parts[:-1]):  # Moodle's folder first: inside it, any file name
        moodle = MOODLE_FOLDER.fullmatch(folder)
        if moodle:
            return Owner(moodle["participant"])
    canvas = CANVAS_NAME.fullmatch(parts[-1])
    if canvas:
        return Owner(canvas["user"], int(canvas["attachment"]), bool(canvas["late"]))
    return Owner()


class LmsFileError(ValueError):
    """An LMS or gradebook file that is not the CSV expected; the message names it and what
    was looked for."""


def number(value):
    """Points as a cell: at most two decimals, no trailing zeros ('80', '86.67')."""
    return f"{round(float(value), 2):g}"


# ----- CSV read with each field's place, so that one cell is replaced and no other byte moves

def read_text(path, wanted):
    """The text of the CSV file at `path` (UTF-8, a byte-order mark kept apart)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LmsFileError(f"{path} cannot be read ({error.strerror}): give the file the LMS "
                           f"exported") from None
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    try:
        text = data[len(bom):].decode("utf-8")
    except UnicodeDecodeError:
        raise LmsFileError(f"{path} is not UTF-8 text: export it again as CSV in UTF-8 (it "
                           f"should have a column {wanted!r})") from None
    if not text.strip():
        raise LmsFileError(f"{path} is empty: expected a CSV file with a column {wanted!r}")
    return bom, text


FIELD = re.compile(r"[^,\r\n]*")


def records(text):
    """[(fields, [(start, end) of each field in text])] for every record of CSV `text` (RFC 4180:
    "" is a quote inside a quoted field), blank lines left out."""
    found, fields, spans, position = [], [], [], 0
    while True:
        if text.startswith('"', position):
            end = position + 1
            while True:
                end = text.find('"', end)
                if end < 0:
                    raise ValueError("a quoted field never ends")
                if not text.startswith('""', end):
                    break
                end += 2
            value, stop = text[position + 1:end].replace('""', '"'), end + 1
            if stop < len(text) and text[stop] not in ",\r\n":
                raise ValueError("text after a quoted field's closing quote")
        else:
            stop = FIELD.match(text, position).end()
            value = text[position:stop]
        fields.append(value)
        spans.append((position, stop))
        if text.startswith(",", stop):
            position = stop + 1
            continue
        found.append((fields, spans))
        fields, spans = [], []
        position = stop + (2 if text.startswith("\r\n", stop) else 1)
        if position >= len(text):
            return [(fields, spans) for fields, spans in found if fields != [""]]


def quoted(value):
    """One cell we write, neutralised, quoted as the csv module would."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([neutralise(value)])
    return buffer.getvalue()


def with_cells(text, rows, changes):
    """`text` with `changes` ({(record index, column index): value}) written into its cells."""
    edits = []
    for (index, column), value in changes.items():
        fields, spans = rows[index]
        if column < len(spans):
            edits.append((*spans[column], quoted(value)))
        else:  # a short record: the missing cells added after its last one
            end = spans[-1][1]
            edits.append((end, end, "," * (column - len(spans)) + "," + quoted(value)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def table(path, wanted):
    """(bom, text, records, header) of the LMS file at `path`, which must have the columns
    `wanted` (LmsFileError names the first one missing)."""
    bom, text = read_text(path, wanted[0])
    try:
        rows = records(text)
    except ValueError as error:
        raise LmsFileError(f"{path} is not a CSV file ({error})") from None
    header = [name.strip() for name in rows[0][0]]
    for name in wanted:
        if name not in header:
            raise LmsFileError(f"{path} has no column {name!r} (its columns: "
                               f"{', '.join(header)}): give the file the LMS exported")
    return bom, text, rows, header


# ----- the exports

def graded_rows(gradebook):
    """{student id: gradebook row} of the rows whose score counts and belong to a student."""
    return {row["student"]: row for row in gradebook if row["student"] and counts(row["status"])}


def check_maximum(path, worth, graded):
    """LmsFileError if the LMS's points for the assignment (`worth`, a cell) are not the
    gradebook's max_score."""
    try:
        worth = float(worth.replace(",", ""))
    except ValueError:
        return  # no number there: nothing to compare
    for row in graded.values():
        if abs(worth - float(row["max_score"])) > 1e-9:
            raise LmsFileError(
                f"{path}: the assignment is worth {number(worth)} points there, the gradebook's "
                f"max_score is {number(row['max_score'])}. Run grade-all again with --points "
                f"summing to {number(worth)} (it rescores without regrading), then export again.")


def export_canvas(gradebook, canvas, assignment, out):
    """Fill the column `assignment` of Canvas's gradebook export `canvas` with each graded
    student's score (matched by Canvas's ID column) and write it to `out`; lines saying whom
    it could not match."""
    bom, text, rows, header = table(canvas, ["Student", "ID"])
    columns = [i for i, name in enumerate(header)
               if assignment in (name, re.sub(r" \(\d+\)$", "", name))]
    if len(columns) != 1:
        raise LmsFileError(f"{canvas} has {'more than one' if columns else 'no'} column "
                           f"{assignment!r}: --assignment takes one of "
                           f"{', '.join(header[header.index('ID') + 1:])}")
    column, id_column = columns[0], header.index("ID")
    graded, changes, seen = graded_rows(gradebook), {}, set()
    for index, (fields, _) in enumerate(rows[1:], 1):
        cells = fields + [""] * (len(header) - len(fields))
        if cells[0].strip() == "Points Possible":
            check_maximum(canvas, cells[column], graded)
        student = cells[id_column].strip()
        if not student.isdigit():
            continue  # Canvas's own rows: Points Possible, Manual Posting
        seen.add(student)
        if student in graded:
            changes[index, column] = number(graded[student]["score"])
    write_whole(out, bom + with_cells(text, rows, changes).encode("utf-8"))
    return missing(seen, graded, "Canvas ID")


def export_moodle(gradebook, worksheet, out):
    """Fill Grade and Feedback comments of Moodle's offline grading worksheet `worksheet` for
    each student (matched by Identifier, 'Participant <id>'); write it to `out`."""
    bom, text, rows, header = table(worksheet, ["Identifier", "Grade", "Feedback comments"])
    grade, comments = header.index("Grade"), header.index("Feedback comments")
    identifier = header.index("Identifier")
    locked = header.index("Grade can be changed") if "Grade can be changed" in header else None
    maximum = header.index("Maximum Grade") if "Maximum Grade" in header else None
    graded, changes, seen, notes = graded_rows(gradebook), {}, set(), []
    for index, (fields, _) in enumerate(rows[1:], 1):
        fields = fields + [""] * (len(header) - len(fields))
        match = re.fullmatch(r"Participant (\d+)", fields[identifier].strip())
        if not match:
            continue
        student = match[1]
        seen.add(student)
        if student not in graded:
            continue
        if locked is not None and fields[locked].strip().lower() == "no":
            notes.append(f"Participant {student}: Moodle says its grade cannot be changed; "
                         f"left as it was")
            continue
        if maximum is not None:
            check_maximum(worksheet, fields[maximum], {student: graded[student]})
        changes[index, grade] = number(graded[student]["score"])
        changes[index, comments] = comment(graded[student])
    write_whole(out, bom + with_cells(text, rows, changes).encode("utf-8"))
    return notes + missing(seen, graded, "Participant")


def comment(row):
    """Moodle's feedback comment for a gradebook row: the score, each function's points, the
    first reason each failing one gives (HTML-escaped: Moodle reads the comment as HTML)."""
    from grading.notebook import GRADED_FUNCTIONS

    parts = [f"{number(row['score'])} of {number(row['max_score'])} points "
             f"(hidden inputs from seed {row['seed']})."]
    parts.append("Points: " + ", ".join(f"{name} {number(row[name])}"
                                        for name in GRADED_FUNCTIONS) + ".")
    if row["errors"]:
        parts.append("Failing: " + row["errors"])
    return html.escape(" ".join(parts), quote=False)


def missing(seen, graded, what):
    """Lines naming the LMS's students without a graded submission, and the reverse."""
    lines = []
    without = sorted(seen - set(graded), key=int)
    if without:
        lines.append(f"no graded submission (left as they were): {what} {', '.join(without)}")
    unknown = sorted(set(graded) - seen, key=int)
    if unknown:
        files = ", ".join(f"{graded[s]['file']} ({s})" for s in unknown)
        lines.append(f"graded but not in the LMS file (not exported): {files}")
    return lines
