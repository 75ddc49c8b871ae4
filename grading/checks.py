"""Grade a notebook: draw hidden inputs, have workers call each graded function on them
(grading.sandbox), and decide every check here, in the grader's process.

A check passes only if what the function computed matches: the public Expected Output values
(SPEC section 4) and, on inputs drawn afresh from a seed for every grading run, NumPy's formulas
and a reference run of model_nn made here. `grade_notebook` is what pytest's graded tests, the
gradebook and any other front end use.
"""
import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grading.notebook import GRADED_FUNCTIONS, graded_cells, read_notebook
from grading.references import (GA, J_CONTENT, J_STYLE_LAYER, J_TOTAL, np_content_cost,
                                np_layer_style_cost, np_unroll)
from grading.sandbox import Sandbox, decode_array, encode_array

HIDDEN_CASES = 4  # hidden inputs per function and kind of call
MODEL_NN_SIZE = (60, 80)  # height, width of model_nn's hidden images (small: fast to grade)
MAX_TEXT = 1 << 20


class Mismatch(Exception):
    """A check's value is not what the function should compute; the message says how."""


@dataclass
class Plan:
    """One graded function's calls (made by a worker) and checks (decided here)."""
    calls: dict = field(default_factory=dict)  # call id -> (probe, arguments)
    checks: dict = field(default_factory=dict)  # check name -> (call ids, verify(outcomes))

    def call(self, probe, **arguments):
        call_id = f"call{len(self.calls)}"
        self.calls[call_id] = probe, arguments
        return call_id

    def check(self, name, call_ids, verify):
        self.checks[name] = list(call_ids), verify


def close(value, expected, rtol, what, atol=0.0):
    value, expected = np.asarray(value), np.asarray(expected, dtype=np.float64)
    if value.shape != expected.shape:
        raise Mismatch(f"{what}: the result has shape {value.shape}, expected {expected.shape}")
    if not np.all(np.abs(value - expected) <= atol + rtol * np.abs(expected)):
        shown = np.array2string(value, precision=7, threshold=12).replace("\n", "")
        wanted = np.array2string(expected, precision=7, threshold=12).replace("\n", "")
        raise Mismatch(f"{what}: got {shown}, expected {wanted}")


def shape_text(shape):
    return "x".join(map(str, shape))


# ----- the plans: hidden inputs and what each function should compute from them -----

def activations(rng, n_channels_max=6):
    shape = (1, int(rng.integers(1, 10)), int(rng.integers(1, 10)),
             int(rng.integers(1, n_channels_max + 1)))
    mean, spread = rng.uniform(-2, 2), rng.uniform(0.5, 5)
    return [rng.normal(mean, spread, shape).astype(np.float32) for _ in range(2)]


ROUND_OFF = 4 * 2.0 ** -24  # float32's unit round-off, with a margin: per term of a sum


def absolute_gram(a):
    """|a| unrolled times its transpose: what bounds float32 round-off in a's Gram matrix."""
    unrolled = np.abs(np_unroll(a))
    return unrolled @ unrolled.T


def content_cost_and_round_off(a_C, a_G):
    return np_content_cost(a_C, a_G), 0.0  # a sum of squares: rtol alone covers it


def style_cost_and_round_off(a_S, a_G):
    """SPEC's layer style cost in float64, and how far float32 arithmetic may move it: each
    Gram entry by n_H*n_W terms' round-off of its absolute Gram, then through (GS - GG)^2."""
    _, n_H, n_W, n_C = a_G.shape
    GS, GG = (np_unroll(a) @ np_unroll(a).T for a in (a_S, a_G))
    error = ROUND_OFF * n_H * n_W * (absolute_gram(a_S) + absolute_gram(a_G))
    bound = np.sum(2 * np.abs(GS - GG) * error + error ** 2) / (4 * n_C ** 2 * (n_H * n_W) ** 2)
    return np_layer_style_cost(a_S, a_G), bound


def plan_layer_cost(rng, public_value, cost_and_round_off):
    """compute_content_cost and compute_layer_style_cost: the test cell, then hidden pairs (the
    first NumPy, the second a tensor, as section 4 calls them; one case with two tensors),
    compared with float64 NumPy within float32's round-off."""
    plan = Plan()
    public = plan.call("test_cell", shapes=[[1, 4, 4, 3], [1, 4, 4, 3]])
    plan.check("gives_reference_value", [public], lambda out: close(
        out[public]["value"], public_value, 1e-5, "the test cell's inputs"))
    for case in range(1, HIDDEN_CASES + 1):
        a, b = activations(rng)
        tensors = ["arg0", "arg1"] if case == 1 else ["arg1"]
        call = plan.call("on_values", as_tensors=tensors, arg0=a, arg1=b)
        what = f"hidden activations of shape {shape_text(a.shape)}"
        expected, round_off = cost_and_round_off(a, b)
        plan.check(f"matches_numpy_on_hidden_input_{case}", [call],
                   lambda out, c=call, e=expected, r=round_off, what=what:
                   close(out[c]["value"], e, 1e-5, what, atol=r))
    return plan


def plan_gram_matrix(rng):
    plan = Plan()
    public = plan.call("test_cell", shapes=[[3, 2]])
    plan.check("gives_reference_value", [public], lambda out: close(
        out[public]["value"], GA, 1e-5, "the test cell's A"))
    for case in range(1, HIDDEN_CASES + 1):
        shape = (int(rng.integers(1, 7)), int(rng.integers(1, 13)))
        A = rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 5), shape).astype(np.float32)
        expected, magnitude = A.astype(np.float64) @ A.T, np.abs(A) @ np.abs(A).T
        call = plan.call("on_values", as_tensors=["arg0"], arg0=A)
        plan.check(f"matches_numpy_on_hidden_input_{case}", [call],
                   lambda out, c=call, e=expected, r=ROUND_OFF * shape[1] * magnitude,
                   what=f"a hidden A of shape {shape_text(shape)}":
                   close(out[c]["value"], e, 1e-5, what, atol=r))
    return plan


def plan_total_cost(rng):
    plan = Plan()
    draws = np.random.RandomState(3).randn(2)  # the test cell: np.random.seed(3), two randn()
    public = plan.call("on_values", as_tensors=[], arg0=draws[0], arg1=draws[1])
    plan.check("gives_reference_value", [public], lambda out: close(
        out[public]["value"], J_TOTAL, 1e-12, "the test cell's J_content and J_style"))
    for case, weights in enumerate(("", "alpha beta", "beta", "alpha"), start=1):
        J_content, J_style, alpha, beta = rng.normal(0, 5, 2).tolist() + rng.uniform(
            0, 50, 2).round(2).tolist()
        given = {name: value for name, value in (("alpha", alpha), ("beta", beta))
                 if name in weights.split()}
        expected = given.get("alpha", 10) * J_content + given.get("beta", 40) * J_style
        call = plan.call("on_values", as_tensors=[], arg0=J_content, arg1=J_style, **given)
        plan.check(f"weights_content_by_alpha_and_style_by_beta_{case}", [call],
                   lambda out, c=call, e=expected, g=given: close(
                       out[c]["value"], e, 1e-12, f"hidden costs with {g or 'the default'} "
                                                  f"weights"))
    J_content, J_style, alpha, beta = rng.uniform(0.1, 5, 4).round(3).tolist()
    call = plan.call("on_values", as_tensors=["arg0", "arg1"], arg0=J_content, arg1=J_style,
                     alpha=alpha, beta=beta)
    plan.check("works_on_tensors", [call], lambda out: close(
        out[call]["value"], alpha * J_content + beta * J_style, 1e-6, "hidden costs as tensors"))
    return plan


ITERATION_BLOCK = re.compile(r"Iteration (\d+) :\ntotal cost = (\S+)\ncontent cost = (\S+)\n"
                             r"style cost = (\S+)\n")
REPORTED = list(range(0, 200, 20))


def plan_model_nn(rng, weights_path):
    """Section 4 on a hidden VGG-19 fixture and hidden images: model_nn(sess, G) must retrace a
    reference run made here (its printouts, pictures and result), and model_nn(sess, G, 3) must
    assign G and run train_step three times."""
    from nst_utils import CONFIG

    height, width = MODEL_NN_SIZE
    content, style = (rng.uniform(0, 255, (1, height, width, 3)) - CONFIG.MEANS
                      for _ in range(2))
    noise = rng.uniform(-20, 20, content.shape)  # as generate_noise_image, from this seed
    start = (noise * CONFIG.NOISE_RATIO + content * (1 - CONFIG.NOISE_RATIO)).astype(np.float32)
    inputs = dict(weights=str(weights_path), content=content, style=style, input_image=start)
    reference = ReferenceRun(inputs, fixture_seed=int(rng.integers(2 ** 31)))
    plan = Plan()
    full = plan.call("model_nn", folder="default_run", **inputs)
    short = plan.call("model_nn", folder="three_iterations", num_iterations=3, **inputs)

    def printed_blocks(out):
        blocks = ITERATION_BLOCK.findall(out[full]["printed"])
        iterations = [int(block[0]) for block in blocks]
        if iterations != REPORTED:
            raise Mismatch(f"model_nn printed reports for iterations {iterations or 'none'}; "
                           f"expected 0, 20, ..., 180, each as 'Iteration i :' then the total, "
                           f"content and style cost lines")
        return np.array([block[1:] for block in blocks], dtype=np.float64)

    def prints_costs(out):
        printed = printed_blocks(out)
        for row, (iteration, expected) in enumerate(zip(REPORTED, reference.get()["costs"])):
            close(printed[row], expected, 1e-3, f"the costs printed at iteration {iteration} "
                                                f"(total, content, style)")

    def lowers_cost(out):
        totals = printed_blocks(out)[:, 0]
        if not totals[-1] < totals[0]:
            raise Mismatch(f"the total cost went from {totals[0]:g} to {totals[-1]:g}")

    def saves_pictures(out):
        pictures, expected = out[full]["pictures"], reference.get()["pictures"]
        if set(pictures) != set(expected):
            raise Mismatch(f"output/ holds {sorted(pictures) or 'nothing'}; expected "
                           f"{sorted(expected)}")
        for name, picture in pictures.items():
            if isinstance(picture, str):
                raise Mismatch(f"output/{name}: {picture}")
            if picture.shape != expected[name].shape:
                raise Mismatch(f"output/{name} has shape {picture.shape}, expected "
                               f"{expected[name].shape}")
            error = np.abs(picture.astype(np.float64) - expected[name]).max()
            if error > 2:  # pixels may round the other way
                raise Mismatch(f"output/{name} is not the image generated at that point (pixels "
                               f"differ by up to {error:.0f})")

    def returns_result(out):
        close(out[full]["generated"], reference.get()["final"], 1e-4,
              "the returned image after 200 iterations", atol=1e-2)
        close(out[full]["final_input"], reference.get()["final"], 1e-4,
              "model['input'] after 200 iterations", atol=1e-2)

    def assigns_and_steps(out):
        steps = float(out[short]["train_steps"])
        if round(steps) != 3:
            raise Mismatch(f"with num_iterations = 3, train_step ran {steps:.0f} times, not 3")
        close(out[short]["generated"], reference.get()["after_3"], 1e-4,
              "the image returned after 3 iterations (is input_image assigned to "
              "model['input'] after the initializer?)", atol=1e-2)

    plan.check("prints_costs_every_20_iterations", [full], prints_costs)
    plan.check("lowers_the_total_cost", [full], lowers_cost)
    plan.check("saves_pictures_to_output", [full], saves_pictures)
    plan.check("returns_the_optimised_input_image", [full], returns_result)
    plan.check("assigns_the_input_and_runs_train_step_each_iteration", [short], assigns_and_steps)
    return plan, reference


class ReferenceRun(threading.Thread):
    """SPEC's model_nn on the hidden inputs, in the grader's process (a thread, so it runs while
    the workers do): the costs and pictures every 20 iterations, the image after 3 and 200.
    start() writes the hidden VGG-19 fixture, which the workers read too, and begins."""

    def __init__(self, inputs, fixture_seed):
        super().__init__(daemon=True)
        self.inputs, self.fixture_seed, self.result, self.error = inputs, fixture_seed, None, None

    def start(self):
        from grading.mat_fixture import write_vgg19_mat

        write_vgg19_mat(self.inputs["weights"], seed=self.fixture_seed)
        os.chmod(self.inputs["weights"], 0o644)
        super().start()

    def run(self):
        try:
            self.result = reference_model_nn(**self.inputs)
        except Exception as error:  # reported by get(), in the grader's thread
            self.error = error

    def get(self):
        self.join()
        if self.error is not None:
            raise RuntimeError(f"the reference run of model_nn failed: {self.error!r}")
        return self.result


def reference_model_nn(weights, content, style, input_image, iterations=200):
    from grading.references import section4_costs
    from nst_utils import CONFIG, deprocess_image, load_vgg_model, save_image, tf

    size = CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH
    CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH = content.shape[1:3]
    try:
        with tf.Graph().as_default(), tf.Session() as sess:
            model = load_vgg_model(weights)
            J, J_content, J_style = section4_costs(sess, model, content, style)
            train_step = tf.train.AdamOptimizer(2.0).minimize(J)
            sess.run(tf.global_variables_initializer())
            sess.run(model["input"].assign(input_image))
            costs, pictures = [], {}
            for i in range(iterations):
                sess.run(train_step)
                image = sess.run(model["input"])
                if i == 2:
                    after_3 = image
                if i % 20 == 0:
                    costs.append(sess.run([J, J_content, J_style]))
                    pictures[f"{i}.png"] = deprocess_image(image)
    finally:
        CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH = size
    with tempfile.TemporaryDirectory() as folder:  # as save_image writes it, JPEG's loss too
        save_image(os.path.join(folder, "final.jpg"), image)
        pictures["generated_image.jpg"] = read_pictures(Path(folder))["final.jpg"]
    return {"costs": np.array(costs, dtype=np.float64), "pictures": pictures,
            "after_3": after_3, "final": image}


# ----- running the workers and deciding -----

@dataclass
class Grades:
    """{function: {check name: None if it passed, else why not}}, and the seed of the run."""
    seed: int
    results: dict

    def passed(self, function):
        return all(reason is None for reason in self.results[function].values())


def make_plans(seed, folder):
    """{function: Plan} with hidden inputs drawn from `seed`; model_nn's fixture in `folder`."""
    plans = {
        "compute_content_cost": plan_layer_cost(np.random.default_rng([seed, 0]), J_CONTENT,
                                                content_cost_and_round_off),
        "gram_matrix": plan_gram_matrix(np.random.default_rng([seed, 1])),
        "compute_layer_style_cost": plan_layer_cost(np.random.default_rng([seed, 2]),
                                                    J_STYLE_LAYER, style_cost_and_round_off),
        "total_cost": plan_total_cost(np.random.default_rng([seed, 3])),
    }
    plans["model_nn"], reference = plan_model_nn(np.random.default_rng([seed, 4]),
                                                 folder / "hidden-vgg19.mat")
    return plans, reference


def check_names():
    """{function: the names of its checks}, the same for every seed: the graded tests' ids."""
    plans, _ = make_plans(0, Path(tempfile.gettempdir()))
    return {name: list(plan.checks) for name, plan in plans.items()}


class HiddenInputs:
    """The plans for one seed, model_nn's fixture and reference run: made once, used for any
    number of notebooks (a class graded with one seed). Use as a context manager."""

    def __init__(self, seed):
        self.seed = seed
        self.folder = Path(tempfile.mkdtemp(prefix="nst-hidden-"))
        os.chmod(self.folder, 0o711)  # workers (another user, when we are root) read the fixture
        self.plans, self.reference = make_plans(seed, self.folder)

    def __enter__(self):
        self.reference.start()  # runs while the workers do
        return self

    def __exit__(self, *exc):
        if self.reference.is_alive():
            self.reference.join()
        shutil.rmtree(self.folder, ignore_errors=True)


def grade_notebook(path, seed, time_limit=60.0, memory_limit_mb=4096, sandbox=None,
                   hidden=None, seconds=None):
    """Grades of the notebook at `path`: every check of every graded function, in at most
    `seconds` in all (None: no limit but each cell's and call's). Workers come from `sandbox`
    (started, left open) and inputs from `hidden` (HiddenInputs for `seed`, left open), or from
    ones made for this notebook."""
    started = time.monotonic()
    try:
        cells = graded_cells(read_notebook(path))
    except (OSError, ValueError) as error:
        why = f"the notebook {path} could not be read: {error}"
        return Grades(seed, {name: dict.fromkeys(checks, why)
                             for name, checks in check_names().items()})
    with contextlib.ExitStack() as stack:
        hidden = hidden or stack.enter_context(HiddenInputs(seed))
        sandbox = sandbox or stack.enter_context(Sandbox(memory_limit_mb))
        plans, outcomes = hidden.plans, {}
        for name in GRADED_FUNCTIONS:
            left = None if seconds is None else seconds - (time.monotonic() - started)
            if name not in cells:
                outcomes[name] = (f"no code cell starts with '# GRADED FUNCTION: {name}' "
                                  f"(keep that first line of the cell as it was given)")
                continue
            if left is not None and left <= 0:
                outcomes[name] = (f"not graded: the functions before it used up the {seconds:g} s "
                                  f"this notebook's grading may take")
                continue
            scratch = sandbox.scratch(name)
            task = {"function": name, "source": cells[name], "scratch": str(scratch),
                    "time_limit": time_limit, "memory_limit_mb": memory_limit_mb,
                    "calls": [{"id": call_id, "probe": probe, "arguments": {
                        key: encode_array(value) if isinstance(value, np.ndarray) else value
                        for key, value in arguments.items()}}
                              for call_id, (probe, arguments) in plans[name].calls.items()]}
            if left is not None:
                task["seconds_left"] = left
            records, ending = sandbox.run(task)
            outcomes[name] = interpret(name, plans[name], records, ending, time_limit,
                                       memory_limit_mb, scratch)
            shutil.rmtree(scratch, ignore_errors=True)
    # every worker this notebook had is gone: decide
    return Grades(seed, {name: decide(name, plans[name], outcomes[name])
                         for name in GRADED_FUNCTIONS})


def decide(name, plan, outcome):
    if isinstance(outcome, str):  # the function could not be graded at all
        return dict.fromkeys(plan.checks, f"{name}: {outcome}")
    results = {}
    for check, (call_ids, verify) in plan.checks.items():
        problems = [outcome[c] for c in call_ids if isinstance(outcome[c], str)]
        if problems:
            results[check] = problems[0] if problems[0].startswith(name) else \
                f"{name}: {problems[0]}"
            continue
        try:
            verify(outcome)
            results[check] = None
        except Mismatch as mismatch:
            results[check] = f"{name}: {mismatch}"
    return results


def ending_sentence(name, ending, time_limit, memory_limit_mb):
    """Why a worker's calls have no result, from how it ended."""
    stage = ending["stage"] or {}
    when = "while its cell ran" if stage.get("stage") in (None, "cell") else "while being called"
    how = ending["how"]
    if how == "time":
        what = "its cell" if when == "while its cell ran" else "a call"
        return f"{what} did not finish within {time_limit} s"
    if how == "budget":
        return "its cell and calls together took longer than the time they may take"
    if how == "memory":
        return f"used more than {memory_limit_mb} MB of memory"
    if how == "output":
        return "the process running it sent back more data than a grade needs"
    if how == "signal":
        return f"the process running {name} was killed by signal {-ending['status']} {when}"
    return f"the process running {name} exited with status {ending['status']} {when}"


def interpret(name, plan, records, ending, time_limit, memory_limit_mb, scratch):
    """What the worker said, checked: a sentence why nothing can be graded, or
    {call id: {key: float64 array or str} | a sentence why that call has no result}."""
    outcome = {}
    for record in records:
        if not isinstance(record, dict):
            continue
        if record.get("stage") == "problem" and isinstance(record.get("message"), str):
            return record["message"][:MAX_TEXT]
        call_id = record.get("check")
        if call_id not in plan.calls or call_id in outcome or "stage" in record:
            continue
        if isinstance(record.get("problem"), str):
            outcome[call_id] = record["problem"][:MAX_TEXT]
        elif isinstance(record.get("result"), dict):
            outcome[call_id] = decode_result(name, record["result"])
    missing = ending_sentence(name, ending, time_limit, memory_limit_mb)
    for call_id, (probe, arguments) in plan.calls.items():
        outcome.setdefault(call_id, missing)
        if probe == "model_nn" and isinstance(outcome[call_id], dict):
            outcome[call_id]["pictures"] = read_pictures(scratch / arguments["folder"] / "output")
    return outcome


RESULT_KEYS = {"value": "array", "generated": "array", "final_input": "array",
               "train_steps": "array", "printed": "text"}


def decode_result(name, result):
    decoded = {}
    try:
        for key, value in result.items():
            kind = RESULT_KEYS.get(key)
            if kind == "text" and isinstance(value, str):
                decoded[key] = value[:MAX_TEXT]
            elif kind == "array":
                decoded[key] = decode_array(value)
            else:
                raise ValueError(key)
    except ValueError:
        return f"the process running {name} sent back a malformed result"
    return decoded


def read_pictures(folder):
    """{file name: uint8 picture, or why it cannot be read} for what model_nn saved."""
    from PIL import Image

    pictures = {}
    if not folder.is_dir() or folder.is_symlink():
        return pictures
    for path in sorted(folder.iterdir())[:100]:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > 16 << 20:
            pictures[path.name] = "not a picture file"
            continue
        try:
            with Image.open(path) as image:
                pictures[path.name] = np.asarray(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError):
            pictures[path.name] = "cannot be read as a picture"
    return pictures
