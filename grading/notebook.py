"""Read a notebook's `# GRADED FUNCTION: <name>` cells. Reading is safe for any file: the JSON
is parsed, nothing in it runs (grading.sandbox runs the cells, in workers)."""
import json
import re

GRADED_FUNCTIONS = ("compute_content_cost", "gram_matrix", "compute_layer_style_cost",
                    "total_cost", "model_nn")
HEADER = re.compile(r"#\s*GRADED FUNCTION:\s*(\w+)")
MAX_NOTEBOOK_BYTES = 32 << 20


def read_notebook(path):
    """The notebook's JSON; ValueError (what is wrong) for anything that is not a notebook."""
    with open(path, "rb") as file:
        data = file.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"it is larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"it is not a notebook (not JSON: {error})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ValueError("it is not a notebook (no list of cells)")
    return notebook


def cell_source(cell):
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    return "".join(map(str, source)) if isinstance(source, list) else str(source)


def graded_cells(notebook):
    """{function name: cell source} for every code cell whose first line is the graded header."""
    cells = {}
    for cell in notebook.get("cells", []):
        lines = cell_source(cell).strip().splitlines()
        if isinstance(cell, dict) and cell.get("cell_type") == "code" and lines:
            match = HEADER.fullmatch(lines[0].strip())
            if match:
                cells[match.group(1)] = cell_source(cell)
    return cells


def trusted_graded_functions(path):
    """{name: function} from running the graded cells of a notebook YOU trust (ours, for the
    benchmarks) in this process. Never use it on a submission: grade those with grading.checks."""
    namespace = {}
    exec("from nst_utils import *", namespace)
    for source in graded_cells(read_notebook(path)).values():
        exec(compile(source, str(path), "exec"), namespace)
    return {name: namespace[name] for name in GRADED_FUNCTIONS}
