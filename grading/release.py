"""Write the notebook students receive: every START/END CODE HERE block emptied, outputs cleared.

    python -m grading release nst_assignment.ipynb release/nst_assignment.ipynb

Inside each `### START CODE HERE ###` ... `### END CODE HERE ###` block, each statement of the
solution becomes a placeholder on its own line: `name = None` for an assignment (same targets),
`None` for anything else. Comments and blank lines (the hints) stay. Nothing else changes; if an
answer line still shows anywhere in the release (a cell outside the blocks repeating it, prose
quoting it), the release is refused, naming the cell.
"""
import ast
import json
import textwrap

from grading.notebook import cell_source

START, END = "### START CODE HERE ###", "### END CODE HERE ###"


def placeholder(statement, source):
    """`targets = None` for an assignment (targets as the solution wrote them), else `None`."""
    if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return " = ".join(ast.get_source_segment(source, t) for t in targets) + " = None"
    return "None"


def blank_block(lines):
    """The lines between START and END, with each statement replaced by its placeholder."""
    source = textwrap.dedent("\n".join(lines))
    tree = ast.parse(source)
    first_lines = {statement.lineno - 1: placeholder(statement, source) for statement in tree.body}
    statement_lines = {i for statement in tree.body
                       for i in range(statement.lineno - 1, statement.end_lineno)}
    result = []
    for i, line in enumerate(lines):
        indent = line[:len(line) - len(line.lstrip())]
        if i in first_lines:
            result.append(indent + first_lines[i])
        elif i not in statement_lines:
            result.append(line)  # comment or blank line
    return result


def release_source(source):
    lines, result, block = source.split("\n"), [], None
    for number, line in enumerate(lines, start=1):
        if block is None:
            result.append(line)
            if START in line:
                block = []
        elif END in line:
            result += blank_block(block) + [line]
            block = None
        else:
            block.append(line)
    if block is not None:
        raise ValueError(f"a '{START}' has no matching '{END}'")
    return "\n".join(result)


def answer_lines(source):
    """The code lines inside the START/END CODE HERE blocks of `source`, stripped (no comments,
    no blank lines, none shorter than MIN_ANSWER, such as a lone closing bracket)."""
    lines, inside = [], False
    for line in source.split("\n"):
        if START in line or END in line:
            inside = START in line
        elif inside and len(line.strip()) >= MIN_ANSWER and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


MIN_ANSWER = 8


def make_release(notebook):
    """The release of `notebook` (changed in place); ValueError if an answer would still show."""
    cells = notebook["cells"]
    answers = {line for cell in cells if cell["cell_type"] == "code"
               for line in answer_lines(cell_source(cell))}
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        cell["source"] = release_source(cell_source(cell))
        cell["outputs"], cell["execution_count"] = [], None
    for number, cell in enumerate(cells, start=1):
        shown = sorted(line for line in answers if line in cell_source(cell))
        if shown:
            raise ValueError(f"cell {number} of the release would still show the answer line "
                             f"`{shown[0]}`: write that cell so that it does not repeat a "
                             f"solution")
    return notebook


def write_release(solution, release):
    """Write the release of the notebook at `solution` to `release` (a Path; never the same)."""
    if release.resolve() == solution.resolve():
        raise ValueError("the release must not overwrite the solution; give another path")
    notebook = make_release(json.loads(solution.read_text(encoding="utf-8")))
    release.parent.mkdir(parents=True, exist_ok=True)
    release.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                       encoding="utf-8")
