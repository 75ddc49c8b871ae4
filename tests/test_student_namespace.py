"""What `from nst_utils import *` gives a student: every name the notebook takes from it (in its
cells, and in the graded cells the grader runs with that import alone), and none of the course's
tools, which live in the nst_course package beside nst_utils.py."""
import ast
import builtins
import inspect
import re

import nst_utils
from conftest import ROOT
from grading.notebook import cell_source, graded_cells, read_notebook

NOTEBOOK = read_notebook(ROOT / "nst_assignment.ipynb")
BUILTINS = set(dir(builtins))


def names(source):
    """(names read, names bound by the code itself, names bound by imports) in `source`."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))
    read, bound, imported = set(), set(), set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias) and node.name != "*":
            imported.add((node.asname or node.name).split(".")[0])
    return read, bound, imported


def star_import():
    namespace = {}
    exec("from nst_utils import *", namespace)
    del namespace["__builtins__"]
    return namespace


CODE = [cell_source(c) for c in NOTEBOOK["cells"] if c["cell_type"] == "code"]
READ, BOUND, IMPORTED = (set().union(*parts) for parts in zip(*map(names, CODE)))


def test_every_name_the_notebook_takes_from_nst_utils_is_in_all():
    taken = READ - BOUND - IMPORTED - BUILTINS
    assert {"tf", "imageio", "CONFIG", "load_vgg_model", "record_costs"} <= taken  # the method works
    assert taken <= set(nst_utils.__all__), taken - set(nst_utils.__all__)


def test_graded_cells_find_what_they_use_with_the_star_import_alone():
    """The grader runs each graded cell after `from nst_utils import *` only (not the notebook's
    first cell), with the section 4 names the notebook defines (model, J, sess, ...)."""
    for name, source in graded_cells(NOTEBOOK).items():
        read, bound, imported = names(source)
        missing = read - bound - imported - BOUND - BUILTINS - set(nst_utils.__all__)
        assert not missing, (name, missing)


def test_star_import_gives_exactly_all_and_none_of_the_course_tools():
    given = star_import()
    assert set(given) == set(nst_utils.__all__) and len(nst_utils.__all__) == len(given)
    modules = {name for name, value in given.items() if inspect.ismodule(value)}
    assert modules == {"tf", "np", "imageio"}
    for tool in ("main", "download", "verify_vgg19_file", "run_notebook", "notebook_parameters",
                 "md5_of", "read_vgg19_weights", "conv3x3", "urllib", "sys", "os", "re",
                 "argparse", "scipy", "hashlib", "http"):
        assert tool not in given, tool
    assert not [name for name in given if name.startswith("_")]


def test_nst_utils_defines_the_assignments_part_and_nst_course_the_tools():
    """nst_utils.py, short enough to read top to bottom, defines what `__all__` names; the
    course's tools are defined in nst_course's modules, not there."""
    source = (ROOT / "nst_utils.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 300
    defined = set(re.findall(r"^(?:def|class) (\w+)", source, re.MULTILINE))
    assert set(nst_utils.__all__) - {"tf", "np", "imageio"} <= defined
    tools = "".join(path.read_text(encoding="utf-8")
                    for path in (ROOT / "nst_course").glob("*.py"))
    for name in ("main", "command_line", "download", "verify_vgg19_file", "run_notebook",
                 "read_vgg19_weights", "conv3x3", "_winograd_conv2d", "_tf1_get_seed",
                 "_start_up_notices_held_back"):
        assert name not in defined, name
        assert re.search(rf"^def {name}\(", tools, re.MULTILINE), name
