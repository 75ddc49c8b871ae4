"""Grading students' notebooks: each kind of broken submission fails only what it breaks, the
student release fails every function cleanly, and tools/grade_all.py keeps a trustworthy
gradebook. The submissions are built here from our notebook by replacing one graded cell.
"""
import csv
import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from notebook_grading import GRADED_FUNCTIONS, cell_source, read_notebook

TOOLS = ROOT / "tools"
TIME_LIMIT = "30"  # seconds per graded cell or call; model_nn needs about 15 under load


def cell(name, body):
    return f"# GRADED FUNCTION: {name}\n\n{body.strip()}\n"


BROKEN = {  # submission name: (graded function it breaks, its cell's new source or None to drop)
    "syntax_error": ("gram_matrix", cell("gram_matrix", """
def gram_matrix(A):
    GA = tf.matmul(A, tf.transpose(A)
    return GA""")),
    "exception_at_definition": ("total_cost", cell("total_cost", """
def total_cost(J_content, J_style, alpha = ten, beta = 40):
    return alpha * J_content + beta * J_style""")),
    "exception_at_call": ("compute_content_cost", cell("compute_content_cost", """
def compute_content_cost(a_C, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    return tf.reduce_summ(tf.square(a_C - a_G)) / (4 * n_H * n_W * n_C)""")),
    "missing_function": ("model_nn", None),
    "renamed_function": ("gram_matrix", cell("gram_matrix", """
def gram(A):
    return tf.matmul(A, tf.transpose(A))""")),
    "wrong_signature": ("total_cost", cell("total_cost", """
def total_cost(J_content, J_style):
    return 10 * J_content + 40 * J_style""")),
    "returns_numpy_value": ("compute_layer_style_cost", cell("compute_layer_style_cost", """
def compute_layer_style_cost(a_S, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    a_S = tf.transpose(tf.reshape(a_S, [n_H * n_W, n_C]))
    a_G = tf.transpose(tf.reshape(a_G, [n_H * n_W, n_C]))
    J = tf.reduce_sum(tf.square(gram_matrix(a_S) - gram_matrix(a_G))) / (4 * n_C**2 * (n_H * n_W)**2)
    with tf.Session() as session:
        return session.run(J)""")),
    "cell_never_finishes": ("compute_content_cost", cell("compute_content_cost", """
def compute_content_cost(a_C, a_G):
    return tf.reduce_sum(tf.square(a_C - a_G))

while True:
    pass""")),
    "call_never_finishes": ("gram_matrix", cell("gram_matrix", """
def gram_matrix(A):
    while True:
        pass""")),
    "top_level_code_crashes": ("model_nn", cell("model_nn", """
my_picture = imageio.imread("images/my_holiday_photo.jpg")

def model_nn(sess, input_image, num_iterations = 200):
    return input_image""")),
    "hard_coded_expected_output": ("compute_content_cost", cell("compute_content_cost", """
def compute_content_cost(a_C, a_G):
    return tf.constant(6.76559)""")),
    "straight_reshape_without_transpose": ("compute_layer_style_cost",
                                           cell("compute_layer_style_cost", """
def compute_layer_style_cost(a_S, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    a_S = tf.reshape(a_S, [n_C, n_H * n_W])
    a_G = tf.reshape(a_G, [n_C, n_H * n_W])
    GS, GG = gram_matrix(a_S), gram_matrix(a_G)
    return tf.reduce_sum(tf.square(GS - GG)) / (4 * n_C**2 * (n_H * n_W)**2)""")),
    "model_nn_forgets_to_assign_input": ("model_nn", cell("model_nn", """
def model_nn(sess, input_image, num_iterations = 200):
    sess.run(tf.global_variables_initializer())
    for i in range(num_iterations):
        sess.run(train_step)
        generated_image = sess.run(model['input'])
        if i % 20 == 0:
            Jt, Jc, Js = sess.run([J, J_content, J_style])
            print("Iteration " + str(i) + " :")
            print("total cost = " + str(Jt))
            print("content cost = " + str(Jc))
            print("style cost = " + str(Js))
            save_image(CONFIG.OUTPUT_DIR + str(i) + ".png", generated_image)
    save_image(CONFIG.OUTPUT_DIR + "generated_image.jpg", generated_image)
    return generated_image""")),
}
WHOLE_RUN_LOST = {  # submissions that take their whole grading process down: every function fails
    "kills_its_process": ("total_cost", cell("total_cost", """
import os, signal
os.kill(os.getpid(), signal.SIGKILL)""")),
    "eats_memory": ("gram_matrix", cell("gram_matrix", """
def gram_matrix(A):
    hoard = []
    while True:
        hoard.append(b"x" * 10**8)""")),
}


def with_graded_cell_replaced(name, source, path):
    """Write a copy of our notebook with the graded cell for `name` replaced (None: removed)."""
    notebook = read_notebook(ROOT / "nst_assignment.ipynb")
    header = f"# GRADED FUNCTION: {name}"
    index = next(i for i, c in enumerate(notebook["cells"]) if cell_source(c).startswith(header))
    if source is None:
        del notebook["cells"][index]
    else:
        notebook["cells"][index]["source"] = source
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def make_release(path):
    subprocess.run([sys.executable, str(TOOLS / "make_release.py"),
                    str(ROOT / "nst_assignment.ipynb"), str(path)], check=True, timeout=60)
    return path


def grade_all(folder, gradebook, *options):
    finished = subprocess.run(
        [sys.executable, str(TOOLS / "grade_all.py"), str(folder), "--out", str(gradebook),
         "--time-limit", TIME_LIMIT, *options],
        capture_output=True, text=True, timeout=1200)
    assert finished.returncode == 0, finished.stderr
    with open(gradebook, newline="") as file:
        return {row["file"]: row for row in csv.DictReader(file)}, finished.stdout


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    """A class: the solution, the student release and every broken submission above."""
    folder = tmp_path_factory.mktemp("submissions")
    shutil.copy(ROOT / "nst_assignment.ipynb", folder / "solution.ipynb")
    make_release(folder / "release.ipynb")
    for kind, (function, source) in {**BROKEN, **WHOLE_RUN_LOST}.items():
        with_graded_cell_replaced(function, source, folder / f"{kind}.ipynb")
    return folder


@pytest.fixture(scope="module")
def gradebook(class_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("grades") / "grades.csv"
    rows, _ = grade_all(class_folder, path, "--jobs", "2", "--memory-limit", "2000")
    return path, rows


def test_solution_passes_every_function(gradebook):
    _, rows = gradebook
    assert rows["solution.ipynb"]["score"] == "5/5", rows["solution.ipynb"]


def test_release_fails_every_function_quickly(gradebook):
    _, rows = gradebook
    row = rows["release.ipynb"]
    assert row["score"] == "0/5" and all(row[name] == "fail" for name in GRADED_FUNCTIONS)
    assert float(row["seconds"]) < 60, row


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_submission_fails_only_the_broken_function(gradebook, kind):
    _, rows = gradebook
    row, broken = rows[f"{kind}.ipynb"], BROKEN[kind][0]
    assert row[broken] == "fail", row
    assert all(row[name] == "pass" for name in GRADED_FUNCTIONS if name != broken), row
    assert row["first_error"].startswith(broken + ":"), row
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
}


@pytest.mark.parametrize("kind", EXPECTED_REASONS)
def test_broken_submission_gets_a_message_naming_the_problem(gradebook, kind):
    _, rows = gradebook
    assert EXPECTED_REASONS[kind] in rows[f"{kind}.ipynb"]["first_error"]


@pytest.mark.parametrize("kind, reason", [("kills_its_process", "crashed"),
                                          ("eats_memory", "more than 2000 MB of memory")])
def test_submission_that_takes_down_its_grading_costs_only_its_own_row(gradebook, kind, reason):
    _, rows = gradebook
    row = rows[f"{kind}.ipynb"]
    assert row["score"] == "0/5" and reason in row["first_error"], row


def test_gradebook_has_one_row_per_submission_and_rerun_skips_them(gradebook, class_folder):
    path, rows = gradebook
    assert set(rows) == {p.name for p in class_folder.glob("*.ipynb")}
    before = path.read_text()
    again, printed = grade_all(class_folder, path, "--jobs", "2")
    assert f"{len(rows)} already graded, 0 to grade" in printed
    assert path.read_text() == before


def test_force_regrades_submissions_already_in_the_gradebook(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    make_release(folder / "release.ipynb")
    path = tmp_path / "grades.csv"
    fake = {"file": "release.ipynb", **{n: "pass" for n in GRADED_FUNCTIONS}, "score": "5/5",
            "seconds": "0", "first_error": ""}
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, list(fake))
        writer.writeheader()
        writer.writerow(fake)
    kept, _ = grade_all(folder, path)
    assert kept["release.ipynb"]["score"] == "5/5"
    regraded, _ = grade_all(folder, path, "--force")
    assert regraded["release.ipynb"]["score"] == "0/5"


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
    assert "FAIL  gram_matrix: 5 of 5 checks fail; first: test_gram_matrix_" in summary
    assert "syntax error at line 4" in summary
    for name in GRADED_FUNCTIONS:
        if name != "gram_matrix":
            assert f"PASS  {name}:" in summary
