"""Our notebook as committed: its graded cells, Expected Output tables, no outputs."""
import pytest

from conftest import ROOT
from grading.notebook import GRADED_FUNCTIONS, cell_source, graded_cells, read_notebook

NOTEBOOK = read_notebook(ROOT / "nst_assignment.ipynb")


def test_committed_notebook_has_no_outputs():
    for cell in NOTEBOOK["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell_source(cell)


@pytest.mark.parametrize("name", GRADED_FUNCTIONS)
def test_graded_cell_marks_the_students_part(name):
    source = graded_cells(NOTEBOOK)[name]
    assert source.startswith(f"# GRADED FUNCTION: {name}\n")
    assert f"def {name}(" in source
    assert source.count("### START CODE HERE ###") == source.count("### END CODE HERE ###") >= 1


@pytest.mark.parametrize("printed, expected", [
    ("J_content", "6.76559"), ("GA", "6.42230511"), ("J_style_layer", "9.19028"),
    ("J", "35.34667875478276")])
def test_expected_output_tables_give_the_reference_values(printed, expected):
    tables = [cell_source(c) for c in NOTEBOOK["cells"]
              if c["cell_type"] == "markdown" and "**Expected Output**" in cell_source(c)]
    assert any(f"**{printed}** | {expected}" in t or (f"**{printed}** | [[" in t and expected in t)
               for t in tables)


def test_images_are_read_with_imageio_not_scipy_misc():
    code = "\n".join(cell_source(c) for c in NOTEBOOK["cells"] if c["cell_type"] == "code")
    assert "scipy.misc" not in code and "imageio.imread(CONFIG.CONTENT_IMAGE)" in code
