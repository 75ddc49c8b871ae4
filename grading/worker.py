"""What a worker does (see grading/sandbox.py): run one graded cell, then call its function on the
inputs of its task, and send back what it computed as plain data (grading/wire.py). Nothing here
decides a grade, and nothing here knows an answer: no reference value and no formula of a graded
function. The checks live in grading/plans.py, in the grader's process, which no worker can read.

Every problem becomes one sentence a student can act on, starting with the student's own line:
a syntax error, an exception, a missing function, a wrong signature, a NumPy value where a tensor
belongs, running out of memory.
"""
import base64
import contextlib
import inspect
import io
import os
import tempfile
import traceback

import numpy as np

import nst_utils
from grading.notebook import GRADED_FUNCTIONS
from grading.wire import decode_array, encode_array
from nst_utils import CONFIG, load_vgg_model, tf

SIGNATURES = {  # the call patterns the assignment uses: (args, kwargs)
    "compute_content_cost": [((1, 2), {})],
    "gram_matrix": [((1,), {})],
    "compute_layer_style_cost": [((1, 2), {})],
    "total_cost": [((1, 2), {}), ((1, 2, 3, 4), {}), ((1, 2), {"alpha": 1, "beta": 2})],
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
CODE_HERE = "write the missing code between '### START CODE HERE ###' and '### END CODE HERE ###'"
MAX_PRINTED = 1 << 20
MAX_MESSAGE = 400  # characters of an error's own message in a sentence


class Problem(Exception):
    """The graded function cannot be graded or misbehaved; the message says why."""


def warm_up():
    """In the zygote, before any fork: walk the workers' path once (a tiny VGG-19 through a cost,
    Adam, a graph exported and imported, the pictures model_nn saves) so that what TensorFlow and
    Pillow load lazily is loaded and workers read no more files; build no Session (forking a
    process whose thread pools run is unsafe)."""
    from grading.mat_fixture import write_vgg19_mat

    with tempfile.TemporaryDirectory() as folder, tf.Graph().as_default():
        model = load_vgg_model(str(write_vgg19_mat(os.path.join(folder, "vgg.mat"))))
        cost = tf.reduce_sum(tf.matmul(tf.reshape(model["conv5_1"], [-1, 1]),
                                       tf.reshape(model["conv5_1"], [1, -1])))
        tf.train.AdamOptimizer(2.0).minimize(cost)
        tf.global_variables_initializer()
        tf.random_normal([2], mean=1, stddev=4)
        meta = tf.train.export_meta_graph()
        with tf.Graph().as_default():
            tf.train.import_meta_graph(meta)
        for name in ("0.png", "generated_image.jpg"):
            nst_utils.save_image(os.path.join(folder, name), np.zeros((1, 2, 2, 3)))


def run_task(task, send):
    """Load the cell of task['function'], then make each of task['calls']; `send` each record."""
    name = task["function"]
    too_much = (f"{name} used more than the {task['memory_limit_mb']} MB of memory a graded "
                f"function may use")
    send({"stage": "cell"})
    try:
        function, namespace = load(name, task["source"], task.get("helpers", ""))
    except Problem as problem:
        send({"problem": str(problem)})
        return
    except MemoryError:
        send({"problem": too_much})
        return
    send({"stage": "loaded"})
    for call in task["calls"]:
        send({"stage": "call", "call": call["id"]})
        arguments = {key: decode_array(value) if isinstance(value, dict) and "float64" in value
                     else value for key, value in call["arguments"].items()}
        try:
            result = PROBES[call["probe"]](name, function, namespace, **arguments)
            record = {"call": call["id"], "result": {
                key: value if isinstance(value, str) else encode_array(value)
                for key, value in result.items()}}
        except Problem as problem:
            record = {"call": call["id"], "problem": str(problem)}
        except MemoryError:
            record = {"call": call["id"], "problem": too_much}
        except (TypeError, ValueError):
            record = {"call": call["id"], "problem": f"{name} returned something that is not "
                                                     f"numbers"}
        send(record)
    send({"stage": "done"})


def load(name, source, helpers):
    """Run the cell in a namespace of its own, after `helpers` (the grader's versions of other
    graded functions it may call); its function, checked for the right signature."""
    namespace = {"__name__": f"graded_{name}"}
    exec("from nst_utils import *", namespace)
    exec(helpers, namespace)
    try:
        code = compile(source, cell_file(name), "exec")
    except SyntaxError as error:
        raise Problem(f"its cell has a syntax error at line {error.lineno}: {error.msg} "
                      f"(`{(error.text or '').strip()}`)") from None
    try:
        exec(code, namespace)
    except MemoryError:
        raise
    except BaseException as error:  # SystemExit too: a cell must not end its grading
        raise Problem(describe(error, name, source, "running its cell")) from None
    function = namespace.get(name)
    if not callable(function):
        defined = sorted(key for key, value in namespace.items() if inspect.isfunction(value)
                         and value.__code__.co_filename == cell_file(name))
        found = f" (it defines: {', '.join(defined)})" if defined else ""
        raise Problem(f"its cell does not define a function named {name}{found}")
    try:
        signature = inspect.signature(function)
        for args, kwargs in SIGNATURES[name]:
            signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        raise Problem(f"wrong signature: expected {EXPECTED_SIGNATURES[name]}, found "
                      f"{name}{signature}") from None
    namespace["__source__"] = source
    return function, namespace


def cell_file(name):
    return f"<graded cell {name}>"


def describe(error, name, source, who):
    """'line 12 of the gram_matrix cell (`GA = ...`) raised ValueError: message': the student's
    own line first (for a TensorFlow error, the line that built the failing operation), else
    `who`; then the error's first line, never a stack of TensorFlow's or the grader's frames."""
    message = str(getattr(error, "message", None) or error).strip().split("\n")[0].strip()
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 3] + "..."
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(error.__traceback__)]
    with contextlib.suppress(Exception):  # where a failing TensorFlow operation was built
        frames += [(frame[0], frame[1]) for frame in error.op.traceback]
    lines = [line for file, line in frames if file == cell_file(name)]
    if lines and source and 0 < lines[-1] <= len(source.splitlines()):
        code = source.splitlines()[lines[-1] - 1].strip()
        who = f"line {lines[-1]} of the {name} cell (`{code}`)"
    return f"{who} raised {type(error).__name__}: {message}".rstrip(": ")


def type_name(value):
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


def call(name, function, namespace, *args, **kwargs):
    """The student's function on these arguments; any exception becomes a Problem."""
    try:
        result = function(*args, **kwargs)
    except MemoryError:
        raise
    except BaseException as error:  # SystemExit too
        raise Problem(describe(error, name, namespace["__source__"], name)) from None
    if result is None:
        raise Problem(f"{name} returned None: {CODE_HERE}")
    if name in RETURNS_TENSOR and not isinstance(result, (tf.Tensor, tf.Variable)):
        raise Problem(f"{name} returned {type_name(result)}; it must return a TensorFlow tensor: "
                      f"build the result with tf operations (tf.reduce_sum, tf.matmul, ...) and "
                      f"do not evaluate it (no .eval() or sess.run inside the function)")
    return result


def run(name, namespace, sess, fetches):
    """sess.run(fetches); a TensorFlow error becomes a Problem naming the student's line."""
    try:
        return sess.run(fetches)
    except tf.errors.OpError as error:
        raise Problem(describe(error, name, namespace["__source__"],
                               f"evaluating what {name} returned")) from None


def evaluate(name, namespace, sess, result):
    """The value of what the function returned: a tensor's, or a plain number's."""
    if isinstance(result, (tf.Tensor, tf.Variable)):
        return run(name, namespace, sess, result)
    if isinstance(result, (int, float, np.number, np.ndarray)) and not isinstance(result, bool):
        return np.asarray(result, dtype=np.float64)
    raise Problem(f"{name} returned {type_name(result)}; it must return a number, or a tensor "
                  f"when given tensors")


# ----- the probes: each makes one call of the graded function and returns what it gave -----

def run_test_cell(shapes, function=None, on_error=None):
    """The notebook's test cells: in a fresh graph and Session with tf.set_random_seed(1), one
    tf.random_normal(shape, mean=1, stddev=4) per shape, in order; returns function(*those)
    evaluated, or the draws themselves when no function is given."""
    tf.reset_default_graph()
    with tf.Session() as sess:
        tf.set_random_seed(1)
        draws = [tf.random_normal(shape, mean=1, stddev=4) for shape in shapes]
        fetches = draws if function is None else function(*draws)
        return sess.run(fetches) if on_error is None else on_error(sess, fetches)


def test_cell(name, function, namespace, shapes):
    """The notebook's test cell with the student's function."""
    return {"value": run_test_cell(
        [[int(n) for n in shape] for shape in shapes],
        lambda *draws: call(name, function, namespace, *draws),
        lambda sess, result: run(name, namespace, sess, result))}


def on_values(name, function, namespace, as_tensors, positional, **arguments):
    """function(*positional values[, alpha=..., beta=...]): the arguments named in `as_tensors`
    as tf.constant, the others as NumPy float32 arrays, or Python floats where 0-d."""
    tf.reset_default_graph()
    values = {}
    for key, value in arguments.items():
        array = np.asarray(value, dtype=np.float64)
        values[key] = (tf.constant(array, dtype=tf.float32) if key in as_tensors
                       else float(array) if array.ndim == 0 else array.astype(np.float32))
    args = [values.pop(key) for key in positional]
    with tf.Session() as sess:
        result = call(name, function, namespace, *args, **values)
        return {"value": evaluate(name, namespace, sess, result)}


def model_nn(name, function, namespace, graph, names, input_image, folder,
             num_iterations=None):
    """Section 4 in the scratch subfolder `folder`: the grader's graph (VGG-19 on hidden weights,
    the costs of hidden images, Adam's train_step; a serialized MetaGraphDef) imported, its
    tensors given to the cell's globals as the notebook names them, then
    model_nn(sess, input_image[, num_iterations])."""
    os.makedirs(folder)
    CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH = input_image.shape[1:3]
    CONFIG.OUTPUT_DIR = "output/"
    tf.reset_default_graph()
    meta = tf.MetaGraphDef()
    meta.ParseFromString(base64.b64decode(graph))
    tf.train.import_meta_graph(meta)
    current = tf.get_default_graph()
    variables = {variable.op.name: variable for variable in tf.global_variables()}
    model = {layer: variables[tensor] if layer == "input" else current.get_tensor_by_name(tensor)
             for layer, tensor in names["model"].items()}
    J, J_content, J_style = (current.get_tensor_by_name(names[key])
                             for key in ("J", "J_content", "J_style"))
    printed = io.StringIO()
    with tf.Session() as sess, contextlib.chdir(folder):
        namespace.update(model=model, J=J, J_content=J_content, J_style=J_style, sess=sess,
                         train_step=current.get_operation_by_name(names["train_step"]))
        options = {} if num_iterations is None else {"num_iterations": int(num_iterations)}
        with contextlib.redirect_stdout(printed):
            generated = call(name, function, namespace, sess, input_image.astype(np.float32),
                             **options)
        beta1_power, final_input = sess.run([variables[names["beta1_power"]], model["input"]])
    try:
        generated = np.asarray(generated, dtype=np.float64)
    except (TypeError, ValueError):
        raise Problem(f"{name} returned {type_name(generated)}, not the generated image") from None
    return {"generated": generated, "final_input": final_input,
            "printed": printed.getvalue()[:MAX_PRINTED],
            "train_steps": np.log(beta1_power) / np.log(0.9) - 1}


PROBES = {"test_cell": test_cell, "on_values": on_values, "model_nn": model_nn}
assert set(SIGNATURES) == set(GRADED_FUNCTIONS)
