"""Load and call the graded functions of a notebook's `# GRADED FUNCTION: <name>` cells.

Only those cells run, each in a namespace of its own (with `from nst_utils import *` and a
reference `gram_matrix`), so a broken function fails its own tests and no others. Every problem
— a syntax error, an exception, a missing function, a wrong signature, a cell or call that does
not finish in time, a NumPy value where a tensor belongs — becomes one sentence a student can act on.
"""
import inspect
import json
import re
import signal
import traceback
from contextlib import contextmanager

GRADED_FUNCTIONS = ("compute_content_cost", "gram_matrix", "compute_layer_style_cost",
                    "total_cost", "model_nn")
HEADER = re.compile(r"#\s*GRADED FUNCTION:\s*(\w+)")
SIGNATURES = {  # the call patterns the assignment uses: (args, kwargs)
    "compute_content_cost": [((1, 2), {})],
    "gram_matrix": [((1,), {})],
    "compute_layer_style_cost": [((1, 2), {})],
    "total_cost": [((1, 2), {}), ((1, 2), {"alpha": 1, "beta": 2})],
    "model_nn": [((1, 2), {}), ((1, 2), {"num_iterations": 3})],
}
EXPECTED_SIGNATURES = {
    "compute_content_cost": "compute_content_cost(a_C, a_G)",
    "gram_matrix": "gram_matrix(A)",
    "compute_layer_style_cost": "compute_layer_style_cost(a_S, a_G)",
    "total_cost": "total_cost(J_content, J_style, alpha = 10, beta = 40)",
    "model_nn": "model_nn(sess, input_image, num_iterations = 200)",
}
RETURNS_TENSOR = {"compute_content_cost", "gram_matrix", "compute_layer_style_cost"}


class GradingTimeout(BaseException):
    """Raised inside student code that runs too long (a BaseException, so `except Exception`
    in the student's code cannot swallow it)."""


@contextmanager
def time_limit(seconds):
    def expire(signum, frame):
        raise GradingTimeout()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def graded_function_of(test_name):
    """The graded function a test checks: tests are named test_<function>_<what it checks>."""
    return next((name for name in GRADED_FUNCTIONS if test_name.startswith(f"test_{name}_")), None)


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
        if cell.get("cell_type") == "code" and lines:
            match = HEADER.fullmatch(lines[0].strip())
            if match:
                cells[match.group(1)] = cell_source(cell)
    return cells


def reference_gram_matrix(A):
    from nst_utils import tf
    return tf.matmul(A, tf.transpose(A))


def describe(error, name, source):
    """'ValueError: ... (line 12 of the gram_matrix cell: `GA = ...`)'."""
    text = f"{type(error).__name__}: {error}".rstrip(": ")
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f.filename == f"<graded cell {name}>"]
    if frames and source:
        line = source.splitlines()[frames[-1].lineno - 1].strip()
        text += f" (line {frames[-1].lineno} of the {name} cell: `{line}`)"
    return text


def type_name(value):
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


class GradedNotebook:
    """The graded functions of one notebook, and why any of them cannot be graded."""

    def __init__(self, path, time_limit_seconds=60):
        self.time_limit = time_limit_seconds
        self.functions, self.namespaces, self.sources, self.problems = {}, {}, {}, {}
        try:
            cells = graded_cells(read_notebook(path))
        except (OSError, ValueError) as error:
            for name in GRADED_FUNCTIONS:
                self.problems[name] = f"the notebook {path} could not be read ({error})"
            return
        for name in GRADED_FUNCTIONS:
            if name not in cells:
                self.problems[name] = (f"no code cell starts with '# GRADED FUNCTION: {name}' "
                                       f"(keep that first line of the cell as it was given)")
            else:
                self._load(name, cells[name])

    def _load(self, name, source):
        self.sources[name] = source
        namespace = {"__name__": f"graded_{name}"}
        if name != "gram_matrix":  # other cells may call it; grade them apart from its bugs
            namespace["gram_matrix"] = reference_gram_matrix
        exec("from nst_utils import *", namespace)
        try:
            code = compile(source, f"<graded cell {name}>", "exec")
        except SyntaxError as error:
            self.problems[name] = (f"its cell has a syntax error at line {error.lineno}: "
                                   f"{error.msg} (`{(error.text or '').strip()}`)")
            return
        try:
            with time_limit(self.time_limit):
                exec(code, namespace)
        except GradingTimeout:
            self.problems[name] = f"its cell did not finish within {self.time_limit} s"
            return
        except BaseException as error:  # SystemExit too: a cell must not end the grading
            self.problems[name] = f"running its cell raised {describe(error, name, source)}"
            return
        function = namespace.get(name)
        if not callable(function):
            defined = sorted(k for k, v in namespace.items()
                             if inspect.isfunction(v) and k != "reference_gram_matrix"
                             and v.__code__.co_filename.startswith("<graded cell"))
            found = f" (it defines: {', '.join(defined)})" if defined else ""
            self.problems[name] = f"its cell does not define a function named {name}{found}"
            return
        try:
            signature = inspect.signature(function)
            for args, kwargs in SIGNATURES[name]:
                signature.bind(*args, **kwargs)
        except (TypeError, ValueError):
            self.problems[name] = (f"wrong signature: expected {EXPECTED_SIGNATURES[name]}, "
                                   f"found {name}{signature}")
            return
        self.functions[name], self.namespaces[name] = function, namespace

    def call(self, name, *args, **kwargs):
        """Call the student's function; any problem raises GradingProblem with a clear message."""
        if name in self.problems:
            raise GradingProblem(f"{name}: {self.problems[name]}")
        try:
            with time_limit(self.time_limit):
                result = self.functions[name](*args, **kwargs)
        except GradingTimeout:
            self.problems[name] = f"a call did not finish within {self.time_limit} s"
            raise GradingProblem(f"{name}: {self.problems[name]}") from None
        except Exception as error:
            raise GradingProblem(f"{name} raised {describe(error, name, self.sources[name])}") \
                from None
        if result is None:
            raise GradingProblem(f"{name} returned None: write the missing code between "
                                 f"'### START CODE HERE ###' and '### END CODE HERE ###'")
        if name in RETURNS_TENSOR:
            from nst_utils import tf
            if not isinstance(result, (tf.Tensor, tf.Variable)):
                raise GradingProblem(
                    f"{name} returned {type_name(result)}; it must return a TensorFlow tensor: "
                    f"build the result with tf operations (tf.reduce_sum, tf.matmul, ...) and "
                    f"do not evaluate it (no .eval() or sess.run inside the function)")
        return result


class GradingProblem(Exception):
    """A graded function cannot be graded or misbehaved; the message says why."""
