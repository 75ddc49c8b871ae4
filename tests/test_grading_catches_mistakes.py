"""Grading a broken copy of the notebook fails exactly the broken function's tests."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from conftest import ROOT
from notebook_grading import GRADED_FUNCTIONS, cell_source, read_notebook

STRAIGHT_RESHAPE = '''# GRADED FUNCTION: compute_layer_style_cost

def compute_layer_style_cost(a_S, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    a_S = tf.reshape(a_S, [n_C, n_H * n_W])   # wrong: right shape, numbers mixed up
    a_G = tf.reshape(a_G, [n_C, n_H * n_W])
    GS = gram_matrix(a_S)
    GG = gram_matrix(a_G)
    return tf.reduce_sum(tf.square(GS - GG)) / (4 * n_C**2 * (n_H * n_W)**2)
'''


def with_graded_cell_replaced(name, source, path):
    """Write a copy of our notebook with the graded cell for `name` replaced by `source`."""
    notebook = read_notebook(ROOT / "nst_assignment.ipynb")
    header = f"# GRADED FUNCTION: {name}"
    cells = [cell for cell in notebook["cells"] if cell_source(cell).startswith(header)]
    assert len(cells) == 1
    cells[0]["source"] = source
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def grade(notebook, tmp_path):
    """Run `pytest -m graded --notebook` as a grader would; return {test id: passed?}."""
    report = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "graded", "-p", "no:cacheprovider",
                    "--notebook", str(notebook), f"--junitxml={report}", str(ROOT / "tests")],
                   cwd=ROOT, capture_output=True, text=True, timeout=600)
    results = {}
    for case in ElementTree.parse(report).iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        results[case.get("name")] = not failed
    return results


def test_straight_reshape_in_layer_style_cost_fails_only_that_function(tmp_path):
    broken = with_graded_cell_replaced("compute_layer_style_cost", STRAIGHT_RESHAPE,
                                       tmp_path / "student.ipynb")
    results = grade(broken, tmp_path)
    for name in GRADED_FUNCTIONS:
        outcomes = {test: passed for test, passed in results.items() if f"test_{name}_" in test}
        assert outcomes, f"no graded test for {name}"
        if name == "compute_layer_style_cost":
            # a 1x1x1x1 activation is the one shape where both unrollings agree
            failed = {test for test, passed in outcomes.items() if not passed}
            assert failed == {test for test in outcomes if "1x1x1x1" not in test}, results
        else:
            assert all(outcomes.values()), (name, results)
