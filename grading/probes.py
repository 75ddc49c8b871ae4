"""What a worker does (see grading.sandbox): run one graded cell, then call its function on the
inputs the grader sent, and write back what it computed as plain data. Nothing here decides a
grade: the values go back to grading.checks, which compares them in the grader's process.

Every problem becomes one sentence a student can act on: a syntax error, an exception, a missing
function, a wrong signature, a NumPy value where a tensor belongs, running out of memory.
"""
import contextlib
import inspect
import io
import os
import tempfile
import traceback

import numpy as np

import nst_utils
from grading.notebook import GRADED_FUNCTIONS
from grading.references import run_test_cell, section4_costs
from grading.sandbox import decode_array, encode_array
from nst_utils import CONFIG, load_vgg_model, tf

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
CODE_HERE = "write the missing code between '### START CODE HERE ###' and '### END CODE HERE ###'"
MAX_PRINTED = 1 << 20


class Problem(Exception):
    """The graded function cannot be graded or misbehaved; the message says why."""


def warm_up():
    """In the zygote, before any fork: walk the probes' path once (a tiny VGG-19 through
    section 4 and Adam, the pictures model_nn saves) so that everything TensorFlow and Pillow
    load lazily is loaded and workers import nothing; build no Session (forking a process whose
    thread pools run is unsafe)."""
    from grading.mat_fixture import write_vgg19_mat

    with tempfile.TemporaryDirectory() as folder, tf.Graph().as_default():
        model = load_vgg_model(str(write_vgg19_mat(os.path.join(folder, "vgg.mat"))))
        cost = tf.reduce_sum(tf.matmul(tf.reshape(model["conv5_1"], [-1, 1]),
                                       tf.reshape(model["conv5_1"], [1, -1])))
        tf.train.AdamOptimizer(2.0).minimize(cost)
        tf.global_variables_initializer()
        tf.random_normal([2], mean=1, stddev=4)
        for name in ("0.png", "generated_image.jpg"):
            nst_utils.save_image(os.path.join(folder, name), np.zeros((1, 2, 2, 3)))


def run_task(task, send):
    """Load the cell of task['function'], then make each of task['calls']; `send` each record."""
    name = task["function"]
    too_much = (f"{name} used more than the {task['memory_limit_mb']} MB of memory a graded "
                f"function may use")
    send({"stage": "cell"})
    try:
        function, namespace = load(name, task["source"])
    except Problem as problem:
        send({"stage": "problem", "message": str(problem)})
        return
    except MemoryError:
        send({"stage": "problem", "message": too_much})
        return
    send({"stage": "loaded"})
    for call in task["calls"]:
        send({"stage": "call", "check": call["id"]})
        arguments = {key: decode_array(value) if isinstance(value, dict) else value
                     for key, value in call["arguments"].items()}
        try:
            result = PROBES[call["probe"]](name, function, namespace, **arguments)
        except Problem as problem:
            send({"check": call["id"], "problem": str(problem)})
            continue
        except MemoryError:
            send({"check": call["id"], "problem": too_much})
            continue
        try:
            send({"check": call["id"], "result": {
                key: value if isinstance(value, str) else encode_array(value)
                for key, value in result.items()}})
        except (TypeError, ValueError):
            send({"check": call["id"], "problem": f"{name} returned something that is not "
                                                  f"numbers"})
    send({"stage": "done"})


def load(name, source):
    """Run the cell in a namespace of its own; its function, checked for the right signature."""
    namespace = {"__name__": f"graded_{name}"}
    if name != "gram_matrix":  # other cells may call it; grade them apart from its bugs
        namespace["gram_matrix"] = reference_gram_matrix
    exec("from nst_utils import *", namespace)
    try:
        code = compile(source, f"<graded cell {name}>", "exec")
    except SyntaxError as error:
        raise Problem(f"its cell has a syntax error at line {error.lineno}: {error.msg} "
                      f"(`{(error.text or '').strip()}`)") from None
    try:
        exec(code, namespace)
    except MemoryError:
        raise
    except BaseException as error:  # SystemExit too: a cell must not end its grading
        raise Problem(f"running its cell raised {describe(error, name, source)}") from None
    function = namespace.get(name)
    if not callable(function):
        defined = sorted(key for key, value in namespace.items()
                         if inspect.isfunction(value)
                         and value.__code__.co_filename.startswith("<graded cell"))
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


def reference_gram_matrix(A):
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


def call(name, function, namespace, *args, **kwargs):
    """The student's function on these arguments; any exception becomes a Problem."""
    try:
        result = function(*args, **kwargs)
    except MemoryError:
        raise
    except BaseException as error:  # SystemExit too
        raise Problem(f"{name} raised {describe(error, name, namespace['__source__'])}") from None
    if result is None:
        raise Problem(f"{name} returned None: {CODE_HERE}")
    if name in RETURNS_TENSOR and not isinstance(result, (tf.Tensor, tf.Variable)):
        raise Problem(f"{name} returned {type_name(result)}; it must return a TensorFlow tensor: "
                      f"build the result with tf operations (tf.reduce_sum, tf.matmul, ...) and "
                      f"do not evaluate it (no .eval() or sess.run inside the function)")
    return result


def evaluate(name, sess, result):
    """The value of what the function returned: a tensor's, or a plain number's."""
    if isinstance(result, (tf.Tensor, tf.Variable)):
        try:
            return sess.run(result)
        except tf.errors.OpError as error:
            raise Problem(f"evaluating what {name} returned raised {describe(error, name, '')}") \
                from None
    if isinstance(result, (int, float, np.number, np.ndarray)) and not isinstance(result, bool):
        return np.asarray(result, dtype=np.float64)
    raise Problem(f"{name} returned {type_name(result)}; it must return a number, or a tensor "
                  f"when given tensors")


# ----- the probes: each makes one call of the graded function and returns what it gave -----

def test_cell(name, function, namespace, shapes):
    """The notebook's test cell (grading.references.run_test_cell) with the function."""
    try:
        return {"value": run_test_cell([[int(n) for n in shape] for shape in shapes],
                                       lambda *draws: call(name, function, namespace, *draws))}
    except tf.errors.OpError as error:
        raise Problem(f"evaluating what {name} returned raised {describe(error, name, '')}") \
            from None


def on_values(name, function, namespace, as_tensors, **arguments):
    """function(arg0, arg1[, alpha=..., beta=...]): the arguments named in `as_tensors` as
    tf.constant, the others as NumPy float32 arrays, or Python floats where 0-d."""
    tf.reset_default_graph()
    arrays = {key: np.asarray(value, dtype=np.float64) for key, value in arguments.items()}
    values = {key: tf.constant(value, dtype=tf.float32) if key in as_tensors
              else (float(value) if value.ndim == 0 else value.astype(np.float32))
              for key, value in arrays.items()}
    keywords = {key: values.pop(key) for key in ("alpha", "beta") if key in values}
    with tf.Session() as sess:
        result = call(name, function, namespace, *[values[key] for key in sorted(values)],
                      **keywords)
        return {"value": evaluate(name, sess, result)}


def model_nn(name, function, namespace, weights, content, style, input_image, folder,
             num_iterations=None):
    """Section 4 on `weights` in the scratch subfolder `folder`: the reference costs and Adam's
    train_step given to the cell's globals, then model_nn(sess, input_image[, num_iterations])."""
    os.makedirs(folder)
    with contextlib.chdir(folder):
        return _model_nn(name, function, namespace, weights, content, style, input_image,
                         num_iterations)


def _model_nn(name, function, namespace, weights, content, style, input_image, num_iterations):
    CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH = content.shape[1:3]
    CONFIG.OUTPUT_DIR = "output/"
    tf.reset_default_graph()
    printed = io.StringIO()
    with tf.Session() as sess:
        model = load_vgg_model(weights)
        J, J_content, J_style = section4_costs(sess, model, content, style)
        optimizer = tf.train.AdamOptimizer(2.0)
        train_step = optimizer.minimize(J)
        namespace.update(model=model, J=J, J_content=J_content, J_style=J_style,
                         train_step=train_step, sess=sess)
        options = {} if num_iterations is None else {"num_iterations": int(num_iterations)}
        with contextlib.redirect_stdout(printed):
            generated = call(name, function, namespace, sess, input_image.astype(np.float32),
                             **options)
        beta1_power = sess.run(optimizer._get_beta_accumulators()[0])
        final_input = sess.run(model["input"])
    try:
        generated = np.asarray(generated, dtype=np.float64)
    except (TypeError, ValueError):
        raise Problem(f"{name} returned {type_name(generated)}, not the generated image") from None
    return {"generated": generated, "final_input": final_input,
            "printed": printed.getvalue()[:MAX_PRINTED],
            "train_steps": np.log(beta1_power) / np.log(0.9) - 1}


PROBES = {"test_cell": test_cell, "on_values": on_values, "model_nn": model_nn}
assert set(SIGNATURES) == set(GRADED_FUNCTIONS)
