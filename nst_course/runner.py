"""`python -m nst_utils run`: the whole notebook, headless, with papermill, its output printed
above the progress bar of its cells.
"""
import io
import os
import sys

from nst_course.precisions import CONV_PRECISIONS
from nst_course.weights import fetch_vgg19


class _PrintAboveProgressBar(io.TextIOBase):
    """Where papermill sends what the notebook prints: to stdout, above the progress bar."""

    def write(self, text):
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout, end="")
        return len(text)


def _section_of(cells, index):
    """The heading of the notebook section that holds cell `index`."""
    for cell in reversed(cells[:index + 1]):
        if cell.cell_type == "markdown" and cell.source.startswith("#"):
            return cell.source.splitlines()[0].lstrip("# ")
    return "before the first heading"


def _literal(text):
    """`text` read as a Python literal (50, 0.5, None, 'a'), or `text` itself if it is not one."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(notebook, given):
    """The (NAME, VALUE) pairs of `-p NAME VALUE` as papermill parameters of `notebook`.

    VALUE stays text where the notebook's default is text, else is read as a literal (50, 0.5,
    None); iteration counts must be whole numbers from 1, conv_precision one of CONV_PRECISIONS.
    Raises ValueError for a name the notebook's parameters cell does not have, or a bad value.
    """
    import papermill

    known = papermill.inspect_notebook(notebook)
    parameters = {}
    for name, text in given:
        if name not in known:
            raise ValueError(f"-p {name}: the notebook has no such parameter; its parameters "
                             f"are {', '.join(known)}.")
        value = text if isinstance(_literal(known[name]["default"]), str) else _literal(text)
        if name.endswith("iterations") and not (type(value) is int and value >= 1):
            raise ValueError(f"-p {name} needs a whole number of at least 1, not '{text}'.")
        if name == "conv_precision" and value not in CONV_PRECISIONS:
            raise ValueError(f"-p conv_precision is {' or '.join(CONV_PRECISIONS)}, not '{text}'.")
        parameters[name] = value
    return parameters


def run_notebook(notebook, executed, given=(), weights=None):
    """Execute `notebook` (in the current folder) with papermill into `executed`, printing its
    output as it comes; `given` holds the (NAME, VALUE) pairs of `-p NAME VALUE`. The weights
    file `weights` (if given) is fetched first when missing (fetch_vgg19).

    Returns a sentence saying what happened. Raises ValueError if the run cannot start, and
    RuntimeError saying which cell failed and why.
    """
    import nbformat
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import DeadKernelError

    if not os.path.isfile(notebook):
        raise ValueError(f"there is no {notebook} in {os.getcwd()}: run this command in the "
                         f"project folder.")
    parameters = notebook_parameters(notebook, given)
    if weights and not os.path.isfile(weights):
        try:
            fetch_vgg19(weights)
        except FileNotFoundError as problem:
            raise ValueError(str(problem)) from None
    os.makedirs(os.path.dirname(executed) or ".", exist_ok=True)
    settings = "".join(f", {name} = {value!r}" for name, value in parameters.items())
    print(f"Running {notebook} with papermill{settings}; the executed copy goes to {executed}.",
          flush=True)
    try:
        papermill.execute_notebook(notebook, executed, parameters=parameters,
                                   stdout_file=_PrintAboveProgressBar(),
                                   progress_bar={"unit": "cell", "desc": notebook,
                                                 "disable": None})  # no bar in a log file
    except papermill.PapermillExecutionError as error:
        cells = nbformat.read(notebook, as_version=4).cells
        index = next((i for i, cell in enumerate(cells) if cell.source == error.source), None)
        where = ("the parameters papermill added" if index is None else
                 f"cell {index + 1} (section {_section_of(cells, index)})")
        raise RuntimeError(f"{where}: {error.ename}: {error.evalue}") from None
    except NoSuchKernel as error:
        raise RuntimeError(f"there is no Jupyter kernel '{error.name}': "
                           f"`pip install -r requirements.txt` installs it (ipykernel).") from None
    except DeadKernelError:
        raise RuntimeError("the notebook's Python process died (out of memory?).") from None
    except KeyboardInterrupt:
        raise RuntimeError("stopped with Ctrl-C.") from None
    return f"Ran {notebook}: the executed notebook is {executed}."
