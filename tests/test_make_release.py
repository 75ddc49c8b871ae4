"""python -m grading release: the students' notebook is ours with every solution block emptied."""
import subprocess
import sys

import pytest

from conftest import ROOT
from grading.notebook import cell_source, read_notebook
from grading.release import END, START

from grading.release import answer_lines, make_release, release_source

SOLUTION = '''def f(x):
    ### START CODE HERE ### (≈3 lines)
    # first the shape
    m, n = x.shape
    total = (x.sum()
             + 1)
    sess.run(train_step)
    ### END CODE HERE ###
    return total
'''
RELEASED = '''def f(x):
    ### START CODE HERE ### (≈3 lines)
    # first the shape
    m, n = None
    total = None
    None
    ### END CODE HERE ###
    return total
'''


def test_each_statement_becomes_one_placeholder_and_hints_stay():
    assert release_source(SOLUTION) == RELEASED


def test_code_outside_the_blocks_is_unchanged():
    source = "x = 1\nprint(x)\n"
    assert release_source(source) == source


def test_unclosed_block_is_an_error():
    with pytest.raises(ValueError, match="no matching"):
        release_source("### START CODE HERE ###\nx = 1\n")


def test_release_differs_from_solution_only_inside_blocks_and_has_no_outputs(tmp_path):
    release = tmp_path / "release.ipynb"
    subprocess.run([sys.executable, "-m", "grading", "release",
                    str(ROOT / "nst_assignment.ipynb"), str(release)], cwd=ROOT, check=True,
                   timeout=60)
    ours, theirs = read_notebook(ROOT / "nst_assignment.ipynb"), read_notebook(release)
    assert len(ours["cells"]) == len(theirs["cells"])
    emptied = 0
    for mine, student in zip(ours["cells"], theirs["cells"]):
        if "### START CODE HERE ###" in cell_source(mine):
            emptied += 1
            assert cell_source(student) != cell_source(mine)
            assert cell_source(student).count("= None") + cell_source(student).count("    None") > 0
        else:
            assert cell_source(student) == cell_source(mine)
        assert student.get("outputs", []) == []
    assert emptied == 6  # five graded functions and the section 4 total cost line
    code = "\n".join(cell_source(c) for c in theirs["cells"] if c["cell_type"] == "code")
    for solution_line in ["tf.matmul(A, tf.transpose(A))", "alpha * J_content + beta * J_style",
                          "sess.run(train_step)", "tf.reduce_sum(tf.square(GS - GG))"]:
        assert solution_line not in code


def test_no_answer_line_of_the_solution_shows_anywhere_in_the_release(tmp_path):
    """Every code line between START and END CODE HERE in our notebook, graded cell or not, is
    searched for in every cell of the release, code and prose."""
    release = tmp_path / "release.ipynb"
    subprocess.run([sys.executable, "-m", "grading", "release",
                    str(ROOT / "nst_assignment.ipynb"), str(release)], cwd=ROOT, check=True,
                   timeout=60)
    answers, inside = [], False
    for cell in read_notebook(ROOT / "nst_assignment.ipynb")["cells"]:
        for line in cell_source(cell).splitlines():
            if "### START CODE HERE ###" in line or "### END CODE HERE ###" in line:
                inside = "### START CODE HERE ###" in line
            elif inside and line.strip() and not line.strip().startswith("#"):
                answers.append(line.strip())
    assert len(answers) == 17  # 16 in the graded cells, and section 4's total cost
    assert "J = total_cost(J_content, J_style, alpha = 10, beta = 40)" in answers
    released = [cell_source(cell) for cell in read_notebook(release)["cells"]]
    assert [(line, i) for line in answers for i, text in enumerate(released) if line in text] == []
    assert set(answer_lines("\n".join(cell_source(c) for c in read_notebook(
        ROOT / "nst_assignment.ipynb")["cells"]))) == set(answers)  # what the release checks


def test_a_cell_that_repeats_an_answer_stops_the_release():
    notebook = {"cells": [
        {"cell_type": "code", "source": f"{START}\nJ = total_cost(J_content, J_style)\n{END}\n"},
        {"cell_type": "markdown", "source": "Try `J = total_cost(J_content, J_style)`."}]}
    with pytest.raises(ValueError, match="cell 2 of the release would still show the answer line "
                                         "`J = total_cost\\(J_content, J_style\\)`"):
        make_release(notebook)


def test_release_refuses_to_overwrite_the_solution(tmp_path):
    solution = tmp_path / "nst_assignment.ipynb"
    solution.write_text((ROOT / "nst_assignment.ipynb").read_text())
    before = solution.read_text()
    finished = subprocess.run([sys.executable, "-m", "grading", "release",
                               str(solution), str(solution)], cwd=ROOT, capture_output=True,
                              text=True)
    assert finished.returncode != 0 and "must not overwrite the solution" in finished.stderr
    assert solution.read_text() == before
