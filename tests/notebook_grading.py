"""Load the graded functions from a notebook's `# GRADED FUNCTION: <name>` cells.

Only those cells run (with `from nst_utils import *` first), so the tests grade exactly what the
notebook's author wrote, and nothing else in the notebook (model loading, training) is executed.
"""
import json
import re

GRADED_FUNCTIONS = ("compute_content_cost", "gram_matrix", "compute_layer_style_cost",
                    "total_cost", "model_nn")
HEADER = re.compile(r"#\s*GRADED FUNCTION:\s*(\w+)")


def read_notebook(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def cell_source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def graded_cells(notebook):
    """{function name: cell source} for every code cell whose first line is the graded header."""
    cells = {}
    for cell in notebook.get("cells", []):
        lines = cell_source(cell).strip().splitlines()
        match = HEADER.fullmatch(lines[0].strip()) if lines and cell.get("cell_type") == "code" else None
        if match:
            cells[match.group(1)] = cell_source(cell)
    return cells


def load_graded_functions(path):
    """Run the graded cells of the notebook at `path` in one namespace.

    Returns (namespace, problems): problems maps a graded function's name to why it is unusable.
    """
    namespace = {"__name__": "graded_notebook"}
    exec("from nst_utils import *", namespace)
    problems = {}
    cells = graded_cells(read_notebook(path))
    for name in GRADED_FUNCTIONS:
        if name not in cells:
            problems[name] = f"no code cell starts with '# GRADED FUNCTION: {name}'"
            continue
        try:
            exec(compile(cells[name], f"<graded cell {name}>", "exec"), namespace)
        except Exception as error:
            problems[name] = f"running its cell raised {type(error).__name__}: {error}"
            continue
        if not callable(namespace.get(name)):
            problems[name] = f"its cell does not define a function named {name}"
    return namespace, problems
