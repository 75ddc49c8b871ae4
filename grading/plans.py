"""What each graded function is asked, and what it must answer: its plan.

A plan lists calls (made by a worker, grading/worker.py) and checks (decided in the grader's
process by grading/judge.py from what the calls computed). The inputs are drawn afresh from a
seed for every grading run: random shapes and values for the three cost functions, random costs
and weights for total_cost, and for model_nn a random VGG-19 fixture, images and start made by a
trusted reference run (grading/reference_run.py). The public Expected Output values are checked
too, through the notebook's own test-cell recipe. No worker imports or reads this module.
"""
import re
from dataclasses import dataclass, field

import numpy as np

from grading.references import (GA, ITERATIONS, J_CONTENT, J_STYLE_LAYER, J_TOTAL, REPORTED,
                                np_content_cost, np_layer_style_cost, np_unroll)

HIDDEN_CASES = 4  # hidden inputs per function and kind of call
ROUND_OFF = 4 * 2.0 ** -24  # float32's unit round-off, with a margin: per term of a sum
# The grader's gram_matrix, given to the other cells that call it: each is graded apart from
# gram_matrix's bugs. Sent in the tasks of those cells only, never to gram_matrix's worker.
GRAM_MATRIX_HELPER = "def gram_matrix(A):\n    return tf.matmul(A, tf.transpose(A))\n"


class Mismatch(Exception):
    """A check's value is not what the function should compute; the message says how."""


@dataclass
class Plan:
    """One graded function's calls (made by a worker) and checks (decided by the grader)."""
    helpers: str = GRAM_MATRIX_HELPER
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


# ----- the three cost functions and total_cost -----

def activations(rng, n_channels_max=6):
    shape = (1, int(rng.integers(1, 10)), int(rng.integers(1, 10)),
             int(rng.integers(1, n_channels_max + 1)))
    mean, spread = rng.uniform(-2, 2), rng.uniform(0.5, 5)
    return [rng.normal(mean, spread, shape).astype(np.float32) for _ in range(2)]


def absolute_gram(a):
    """|a| unrolled times its transpose: what bounds float32 round-off in a's Gram matrix."""
    unrolled = np.abs(np_unroll(a))
    return unrolled @ unrolled.T


def content_cost_and_round_off(a_C, a_G):
    return np_content_cost(a_C, a_G), 0.0  # a sum of squares: rtol alone covers it


def style_cost_and_round_off(a_S, a_G):
    """The layer style cost in float64, and how far float32 arithmetic may move it: each Gram
    entry by n_H*n_W terms' round-off of its absolute Gram, then through (GS - GG)^2."""
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
        call = plan.call("on_values", as_tensors=tensors, positional=["arg0", "arg1"],
                         arg0=a, arg1=b)
        what = f"hidden activations of shape {shape_text(a.shape)}"
        expected, round_off = cost_and_round_off(a, b)
        plan.check(f"matches_numpy_on_hidden_input_{case}", [call],
                   lambda out, c=call, e=expected, r=round_off, what=what:
                   close(out[c]["value"], e, 1e-5, what, atol=r))
    return plan


def plan_gram_matrix(rng):
    plan = Plan(helpers="")
    public = plan.call("test_cell", shapes=[[3, 2]])
    plan.check("gives_reference_value", [public], lambda out: close(
        out[public]["value"], GA, 1e-5, "the test cell's A"))
    for case in range(1, HIDDEN_CASES + 1):
        shape = (int(rng.integers(1, 7)), int(rng.integers(1, 13)))
        A = rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 5), shape).astype(np.float32)
        expected, magnitude = A.astype(np.float64) @ A.T, np.abs(A) @ np.abs(A).T
        call = plan.call("on_values", as_tensors=["arg0"], positional=["arg0"], arg0=A)
        plan.check(f"matches_numpy_on_hidden_input_{case}", [call],
                   lambda out, c=call, e=expected, r=ROUND_OFF * shape[1] * magnitude,
                   what=f"a hidden A of shape {shape_text(shape)}":
                   close(out[c]["value"], e, 1e-5, what, atol=r))
    return plan


def plan_total_cost(rng):
    """The test cell; hidden costs with the default weights, with both, one or the other given
    by keyword, both given by position (as the notebook's own cells call it), and as tensors."""
    plan = Plan()
    draws = np.random.RandomState(3).randn(2)  # the test cell: np.random.seed(3), two randn()
    public = plan.call("on_values", as_tensors=[], positional=["arg0", "arg1"],
                       arg0=draws[0], arg1=draws[1])
    plan.check("gives_reference_value", [public], lambda out: close(
        out[public]["value"], J_TOTAL, 1e-12, "the test cell's J_content and J_style"))
    cases = [("keyword", ""), ("keyword", "alpha beta"), ("keyword", "beta"),
             ("keyword", "alpha"), ("position", "alpha beta")]
    for case, (how, weights) in enumerate(cases, start=1):
        J_content, J_style = rng.normal(0, 5, 2).tolist()
        alpha, beta = rng.uniform(0, 50, 2).round(2).tolist()
        given = {name: value for name, value in (("alpha", alpha), ("beta", beta))
                 if name in weights.split()}
        expected = given.get("alpha", 10) * J_content + given.get("beta", 40) * J_style
        positional = ["arg0", "arg1"] + (["alpha", "beta"] if how == "position" else [])
        call = plan.call("on_values", as_tensors=[], positional=positional, arg0=J_content,
                         arg1=J_style, **given)
        shown = ", ".join(f"{k}={v}" for k, v in given.items()) or "the default weights"
        described = f"hidden costs with {shown}" + (" by position" if how == "position" else "")
        name = ("weights_content_by_alpha_and_style_by_beta" if how == "keyword"
                else "takes_alpha_then_beta_by_position")
        plan.check(f"{name}_{case}" if how == "keyword" else name, [call],
                   lambda out, c=call, e=expected, d=described: close(
                       out[c]["value"], e, 1e-12, d))
    J_content, J_style, alpha, beta = rng.uniform(0.1, 5, 4).round(3).tolist()
    call = plan.call("on_values", as_tensors=["arg0", "arg1"], positional=["arg0", "arg1"],
                     arg0=J_content, arg1=J_style, alpha=alpha, beta=beta)
    plan.check("works_on_tensors", [call], lambda out: close(
        out[call]["value"], alpha * J_content + beta * J_style, 1e-6, "hidden costs as tensors"))
    return plan


# ----- model_nn -----

ITERATION_BLOCK = re.compile(r"Iteration (\d+) :\ntotal cost = (\S+)\ncontent cost = (\S+)\n"
                             r"style cost = (\S+)\n")
PICTURE_LEVELS = 2  # grey levels a saved pixel may differ by (rounding the other way)


def plan_model_nn(reference):
    """Section 4 on hidden weights and images (`reference`, a ReferenceRun: the graph, inputs
    and results): model_nn(sess, G) must retrace the reference (its printouts, its pictures, each
    of the step it is named for, and its result), and model_nn(sess, G, 3) must assign G and run
    train_step three times."""
    plan = Plan()
    full = plan.call("model_nn", folder="default_run")
    short = plan.call("model_nn", folder="three_iterations", num_iterations=3)

    def printed_costs(out):
        blocks = ITERATION_BLOCK.findall(out[full]["printed"])
        iterations = [int(block[0]) for block in blocks]
        if iterations != REPORTED:
            raise Mismatch(f"model_nn printed reports for iterations {iterations[:12] or 'none'}; "
                           f"expected 0, 20, ..., 180, each as 'Iteration i :' then the total, "
                           f"content and style cost lines")
        return np.array([[number(line, text) for line, text in zip(
            ("total cost", "content cost", "style cost"), block[1:])] for block in blocks])

    def prints_costs(out):
        printed = printed_costs(out)
        for row, (iteration, expected) in enumerate(zip(REPORTED, reference.get()["costs"])):
            close(printed[row], expected, 1e-3, f"the costs printed at iteration {iteration} "
                                                f"(total, content, style)")

    def lowers_cost(out):
        totals = printed_costs(out)[:, 0]
        if not totals[-1] < totals[0]:
            raise Mismatch(f"the total cost went from {totals[0]:g} to {totals[-1]:g}")

    def saves_pictures(out):
        pictures, expected = out[full]["pictures"], reference.get()
        for row, i in enumerate(REPORTED):
            before, at, after = expected["pictures"][row]
            picture_of_step(pictures, f"{i}.png", at, (before, after), i)
        picture_of_step(pictures, "generated_image.jpg", expected["final_jpeg"], (), None)

    def returns_result(out):
        close(out[full]["generated"], reference.get()["final"], 1e-4,
              f"the returned image after {ITERATIONS} iterations", atol=1e-2)
        close(out[full]["final_input"], reference.get()["final"], 1e-4,
              f"model['input'] after {ITERATIONS} iterations", atol=1e-2)

    def assigns_and_steps(out):
        steps = float(out[short]["train_steps"])
        if not np.isfinite(steps) or round(steps) != 3:
            raise Mismatch(f"with num_iterations = 3, train_step ran {steps:.0f} times, not 3")
        close(out[short]["generated"], reference.get()["after_3"], 1e-4,
              "the image returned after 3 iterations (is input_image assigned to "
              "model['input'] after the initializer?)", atol=1e-2)

    plan.check("prints_costs_every_20_iterations", [full], prints_costs)
    plan.check("lowers_the_total_cost", [full], lowers_cost)
    plan.check("saves_pictures_to_output", [full], saves_pictures)
    plan.check("returns_the_optimised_input_image", [full], returns_result)
    plan.check("assigns_the_input_and_runs_train_step_each_iteration", [short], assigns_and_steps)
    return plan


def number(line, text):
    """A printed cost as a float; Mismatch saying how to print it if it is not a number."""
    try:
        return float(text)
    except ValueError:
        raise Mismatch(f"model_nn printed '{line} = {text[:40]}', which is not a number: print "
                       f"the value itself (a float from sess.run, not a list or a formatted "
                       f"string), e.g. print(\"{line} = \" + str(value))") from None


def picture_of_step(pictures, name, expected, neighbours, iteration):
    """The saved picture `name` must be `expected` (within PICTURE_LEVELS per pixel) and no
    closer to a neighbour step's picture than to it."""
    picture = pictures.get(name)
    if picture is None:
        raise Mismatch(f"output/{name} was not saved")
    if isinstance(picture, str):
        raise Mismatch(f"output/{name}: {picture}")
    if picture.shape != expected.shape:
        raise Mismatch(f"output/{name} has shape {picture.shape}, expected {expected.shape}")
    distance = np.abs(picture.astype(np.float64) - expected)
    nearest = min((np.abs(picture.astype(np.float64) - other).mean() for other in neighbours),
                  default=np.inf)
    if distance.max() > PICTURE_LEVELS or nearest < distance.mean():
        when = "" if iteration is None else (f" (it should show the image after iteration "
                                             f"{iteration}'s train_step)")
        raise Mismatch(f"output/{name} is not the image generated at that point{when}: pixels "
                       f"differ by up to {distance.max():.0f}")


def make_plans(seed, reference=None):
    """{function: Plan} with hidden inputs drawn from `seed`; model_nn's from `reference`."""
    return {
        "compute_content_cost": plan_layer_cost(np.random.default_rng([seed, 0]), J_CONTENT,
                                                content_cost_and_round_off),
        "gram_matrix": plan_gram_matrix(np.random.default_rng([seed, 1])),
        "compute_layer_style_cost": plan_layer_cost(np.random.default_rng([seed, 2]),
                                                    J_STYLE_LAYER, style_cost_and_round_off),
        "total_cost": plan_total_cost(np.random.default_rng([seed, 3])),
        "model_nn": plan_model_nn(reference),
    }


def check_names():
    """{function: the names of its checks}, the same for every seed: the graded tests' ids."""
    return {name: list(plan.checks) for name, plan in make_plans(0).items()}
