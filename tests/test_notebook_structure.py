"""Our notebook as committed: its graded cells, Expected Output tables, no outputs, its
diagrams."""
import copy
import re

import pytest

from conftest import ROOT
from grading.notebook import GRADED_FUNCTIONS, cell_source, graded_cells, read_notebook
from grading.release import make_release

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


def markdown_images(notebook):
    return [link for cell in notebook["cells"] if cell["cell_type"] == "markdown"
            for link in re.findall(r"!\[[^\]]+\]\(([^)]+)\)", cell_source(cell))]


def test_the_diagrams_are_ours_shown_in_the_notebook_and_in_the_release():
    shown = markdown_images(NOTEBOOK)
    assert shown == ["images/nst_overview.png", "images/content_unrolling.png",
                     "images/gram_matrix.png", "images/style_unrolling.png"]
    sources = (ROOT / "images" / "SOURCES.md").read_text()
    script = (ROOT / "images" / "draw_diagrams.py").read_text()
    for path in shown:
        assert (ROOT / path).stat().st_size < 150_000, path  # small enough to commit
        name = path.split("/")[1]
        assert f"| `{name}` |" in sources and "draw_diagrams.py" in sources
        assert f'"{name}"' in script  # the script writes it
    assert markdown_images(make_release(copy.deepcopy(NOTEBOOK))) == shown

