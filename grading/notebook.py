"""Read a notebook's `# GRADED FUNCTION: <name>` cells, and find the notebooks in a folder.
Every file is untrusted: reading one never runs anything in it (grading/sandbox.py runs the
cells, in workers), never blocks on a pipe, never follows a link, and raises only ValueError or
OSError, with a sentence, for anything that is not a notebook."""
import json
import os
import re
import stat

GRADED_FUNCTIONS = ("compute_content_cost", "gram_matrix", "compute_layer_style_cost",
                    "total_cost", "model_nn")
HEADER = re.compile(r"#\s*GRADED FUNCTION:\s*(\w+)")
MAX_NOTEBOOK_BYTES = 32 << 20
MAX_FILES = 10_000  # entries looked at when searching a submission folder
UNTRUSTED = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # no link, no waiting


def open_beneath(base, *parts):
    """A file descriptor of base/part/.../part opened for reading: `base` is trusted, and no
    link is followed below it nor a pipe waited on; OSError if there is no such file."""
    directory = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, UNTRUSTED | os.O_DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = inner
        return os.open(parts[-1], UNTRUSTED, dir_fd=directory)
    finally:
        os.close(directory)


def read_notebook(path):
    """The notebook's JSON; ValueError (what is wrong) for anything that is not a notebook."""
    try:
        fd = os.open(path, UNTRUSTED)
    except OSError as error:
        if os.path.islink(path):
            raise ValueError("it is a link, not a notebook file") from None
        raise ValueError(f"it cannot be opened ({error.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("it is not a regular file")
        data = file.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"it is larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"it is not a notebook (not JSON: {type(error).__name__})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ValueError("it is not a notebook (no list of cells)")
    return notebook


def cell_source(cell):
    """A cell's source as text: its string, or its list of strings joined (anything else: "")."""
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


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


def find_notebooks(folder):
    """The *.ipynb regular files below `folder`, sorted, without following links or looking
    into .ipynb_checkpoints; at most MAX_FILES entries are looked at."""
    found, seen = [], 0
    for parent, folders, files in os.walk(folder, followlinks=False):
        folders[:] = sorted(f for f in folders if f != ".ipynb_checkpoints")
        for name in files:
            seen += 1
            path = os.path.join(parent, name)
            try:
                if name.endswith(".ipynb") and stat.S_ISREG(os.lstat(path).st_mode):
                    found.append(path)
            except OSError:  # gone meanwhile
                pass
        seen += len(folders)
        if seen > MAX_FILES:
            break
    return sorted(found)


def trusted_graded_functions(path):
    """{name: function} from running the graded cells of a notebook YOU trust (ours, for the
    benchmarks) in this process. Never use it on a submission: grade those with grading.judge."""
    namespace = {}
    exec("from nst_utils import *", namespace)
    for source in graded_cells(read_notebook(path)).values():
        exec(compile(source, str(path), "exec"), namespace)
    return {name: namespace[name] for name in GRADED_FUNCTIONS}
