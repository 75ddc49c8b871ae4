"""Grade the notebook's functions: SPEC section 4's reference values through the notebook's own
test-cell code, the same functions on other shapes and values against NumPy, and model_nn on a
tiny VGG-19 fixture. Run: python -m pytest -m graded --notebook PATH
"""
import contextlib
import io
import re

import imageio.v2 as imageio
import numpy as np
import pytest

from conftest import ROOT
from notebook_grading import GradingProblem
from nst_utils import CONFIG, generate_noise_image, load_vgg_model, reshape_and_normalize_image, tf
from references import (GA, J_CONTENT, J_STYLE_LAYER, J_TOTAL, np_content_cost,
                        np_layer_style_cost, run_test_cell)

pytestmark = pytest.mark.graded

OTHER_SHAPES = [(1, 5, 7, 4), (1, 3, 9, 2), (1, 6, 2, 5), (1, 1, 1, 1)]


def shape_id(shape):
    return "x".join(map(str, shape))


def evaluate(tensor):
    with tf.Session() as sess:
        return sess.run(tensor)


def random_activations(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(1, 4, shape).astype(np.float32), rng.normal(1, 4, shape).astype(np.float32)


# ----- compute_content_cost -----

def test_compute_content_cost_gives_reference_value(graded):
    compute_content_cost = graded("compute_content_cost")
    value = run_test_cell([[1, 4, 4, 3], [1, 4, 4, 3]], compute_content_cost)  # a_C, a_G
    np.testing.assert_allclose(value, J_CONTENT, rtol=1e-5)


@pytest.mark.parametrize("shape", OTHER_SHAPES, ids=shape_id)
def test_compute_content_cost_matches_numpy_on_other_shapes(graded, shape):
    compute_content_cost = graded("compute_content_cost")
    a_C, a_G = random_activations(shape, seed=sum(shape))
    tf.reset_default_graph()
    # a_C as NumPy values and a_G as a tensor, as section 4 calls it
    value = evaluate(compute_content_cost(a_C, tf.constant(a_G)))
    np.testing.assert_allclose(value, np_content_cost(a_C, a_G), rtol=1e-5)


# ----- gram_matrix -----

def test_gram_matrix_gives_reference_value(graded):
    gram_matrix = graded("gram_matrix")
    value = run_test_cell([[3, 2 * 1]], gram_matrix)  # A
    np.testing.assert_allclose(value, GA, rtol=1e-5)


@pytest.mark.parametrize("shape", [(4, 6), (2, 10), (5, 1), (1, 3)], ids=shape_id)
def test_gram_matrix_matches_numpy_on_other_shapes(graded, shape):
    gram_matrix = graded("gram_matrix")
    A = np.random.default_rng(shape[0]).normal(0, 3, shape).astype(np.float32)
    tf.reset_default_graph()
    value = evaluate(gram_matrix(tf.constant(A)))
    assert value.shape == (shape[0], shape[0])
    np.testing.assert_allclose(value, A.astype(np.float64) @ A.T, rtol=1e-5, atol=1e-5)


# ----- compute_layer_style_cost -----

def test_compute_layer_style_cost_gives_reference_value(graded):
    compute_layer_style_cost = graded("compute_layer_style_cost")
    value = run_test_cell([[1, 4, 4, 3], [1, 4, 4, 3]], compute_layer_style_cost)  # a_S, a_G
    np.testing.assert_allclose(value, J_STYLE_LAYER, rtol=1e-5)


@pytest.mark.parametrize("shape", OTHER_SHAPES, ids=shape_id)
def test_compute_layer_style_cost_matches_numpy_on_other_shapes(graded, shape):
    compute_layer_style_cost = graded("compute_layer_style_cost")
    a_S, a_G = random_activations(shape, seed=sum(shape) + 1)
    tf.reset_default_graph()
    # a_S as NumPy values and a_G as a tensor, as compute_style_cost calls it
    value = evaluate(compute_layer_style_cost(a_S, tf.constant(a_G)))
    np.testing.assert_allclose(value, np_layer_style_cost(a_S, a_G), rtol=1e-5)


# ----- total_cost -----

def test_total_cost_gives_reference_value(graded):
    total_cost = graded("total_cost")
    np.random.seed(3)
    J_content = np.random.randn()
    J_style = np.random.randn()
    np.testing.assert_allclose(total_cost(J_content, J_style), J_TOTAL, rtol=1e-12)


@pytest.mark.parametrize("J_content, J_style, weights, expected", [
    (2.0, 3.0, {}, 10 * 2.0 + 40 * 3.0),
    (1.5, -2.0, {"alpha": 3, "beta": 0.5}, 3.5),
    (0.25, 4.0, {"beta": 1}, 6.5),
    (7.0, 0.0, {"alpha": 0}, 0.0),
])
def test_total_cost_weights_content_by_alpha_and_style_by_beta(graded, J_content, J_style,
                                                                weights, expected):
    total_cost = graded("total_cost")
    np.testing.assert_allclose(total_cost(J_content, J_style, **weights), expected, rtol=1e-12)


def test_total_cost_works_on_tensors(graded):
    total_cost = graded("total_cost")
    tf.reset_default_graph()
    value = evaluate(total_cost(tf.constant(2.0), tf.constant(0.5), alpha=4, beta=6))
    np.testing.assert_allclose(value, 11.0, rtol=1e-6)


# ----- model_nn -----

ITERATION_BLOCK = re.compile(r"Iteration (\d+) :\ntotal cost = (\S+)\ncontent cost = (\S+)\n"
                             r"style cost = (\S+)\n")
STYLE_LAYERS = [("conv1_1", 0.2), ("conv2_1", 0.2), ("conv3_1", 0.2), ("conv4_1", 0.2),
                ("conv5_1", 0.2)]


def reference_cost_graph(sess, model):
    """SPEC section 3's section-4 wiring with reference costs: (J, J_content, J_style)."""
    def unroll(a):
        n_C = a.shape[-1]
        return tf.transpose(tf.reshape(a, [-1, n_C]))

    content = reshape_and_normalize_image(imageio.imread(ROOT / CONFIG.CONTENT_IMAGE))
    style = reshape_and_normalize_image(imageio.imread(ROOT / CONFIG.STYLE_IMAGE))
    sess.run(model["input"].assign(content))
    a_C, a_G = sess.run(model["conv4_2"]), model["conv4_2"]
    J_content = tf.reduce_sum(tf.square(a_C - a_G)) / (4 * np.prod(a_C.shape[1:]))
    sess.run(model["input"].assign(style))
    J_style = 0
    for layer, coeff in STYLE_LAYERS:
        a_S, a_G = sess.run(model[layer]), model[layer]
        _, n_H, n_W, n_C = a_S.shape
        GS = tf.matmul(unroll(a_S), unroll(a_S), transpose_b=True)
        GG = tf.matmul(unroll(a_G), unroll(a_G), transpose_b=True)
        J_style += coeff * tf.reduce_sum(tf.square(GS - GG)) / (4 * n_C ** 2 * (n_H * n_W) ** 2)
    return 10 * J_content + 40 * J_style, J_content, J_style, content


def run_model_nn(graded_notebook, weights_path, folder, seed=0, **options):
    """Section 4 on the given weights with `folder` as working directory, then the notebook's
    model_nn(sess, G, **options). Returns what the tests check, or {"problem": why it failed}.
    """
    if "model_nn" in graded_notebook.problems:
        return {"problem": graded_notebook.problems["model_nn"]}
    namespace = graded_notebook.namespaces["model_nn"]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        tf.reset_default_graph()
        with tf.Session() as sess:
            model = load_vgg_model(str(weights_path))
            J, J_content, J_style, content = reference_cost_graph(sess, model)
            optimizer = tf.train.AdamOptimizer(2.0)
            train_step = optimizer.minimize(J)
            for name, value in dict(model=model, J=J, J_content=J_content, J_style=J_style,
                                    train_step=train_step, sess=sess).items():
                patch.setitem(namespace, name, value)
            np.random.seed(seed)
            input_image = generate_noise_image(content)
            try:
                with contextlib.redirect_stdout(printed):
                    generated = graded_notebook.call("model_nn", sess, input_image, **options)
            except GradingProblem as problem:
                return {"problem": str(problem)}
            beta1_power = sess.run(optimizer._get_beta_accumulators()[0])
            final_input = sess.run(model["input"])
    return dict(input_image=input_image, generated=generated, printed=printed.getvalue(),
                final_input=final_input, output=folder / "output",
                train_steps=round(np.log(beta1_power) / np.log(0.9)) - 1)


@pytest.fixture(scope="module")
def model_nn_run(graded_notebook, tiny_vgg_path, tmp_path_factory):
    """One default run: model_nn(sess, G) with 200 iterations, shared by the checks below."""
    return run_model_nn(graded_notebook, tiny_vgg_path, tmp_path_factory.mktemp("model_nn"))


def completed(run):
    if "problem" in run:
        pytest.fail(run["problem"] if run["problem"].startswith("model_nn")
                    else f"model_nn: {run['problem']}", pytrace=False)
    return run


def test_model_nn_prints_costs_every_20_iterations(model_nn_run):
    run = completed(model_nn_run)
    blocks = ITERATION_BLOCK.findall(run["printed"])
    assert [int(block[0]) for block in blocks] == list(range(0, 200, 20)), run["printed"]
    for _, total, content, style in blocks:
        np.testing.assert_allclose(float(total), 10 * float(content) + 40 * float(style), rtol=1e-4)


def test_model_nn_lowers_the_total_cost(model_nn_run):
    run = completed(model_nn_run)
    totals = [float(block[1]) for block in ITERATION_BLOCK.findall(run["printed"])]
    assert len(totals) == 10 and totals[-1] < totals[0], totals


def test_model_nn_saves_pictures_to_output(model_nn_run):
    run = completed(model_nn_run)
    expected = {f"{i}.png" for i in range(0, 200, 20)} | {"generated_image.jpg"}
    assert {p.name for p in run["output"].iterdir()} == expected
    for name in expected:
        picture = imageio.imread(run["output"] / name)
        assert picture.shape == (300, 400, 3) and picture.dtype == np.uint8


def test_model_nn_returns_the_optimised_input_image(model_nn_run):
    run = completed(model_nn_run)
    generated = run["generated"]
    assert np.shape(generated) == np.shape(run["input_image"])
    np.testing.assert_array_equal(generated, run["final_input"])
    assert not np.allclose(generated, run["input_image"], atol=1.0)


def test_model_nn_assigns_the_input_and_runs_train_step_each_iteration(graded_notebook,
                                                                        tiny_vgg_path, tmp_path):
    run = completed(run_model_nn(graded_notebook, tiny_vgg_path, tmp_path, seed=5,
                                 num_iterations=3))
    assert run["train_steps"] == 3, f"train_step ran {run['train_steps']} times, not 3"
    assert [int(b[0]) for b in ITERATION_BLOCK.findall(run["printed"])] == [0]
    moved = np.abs(np.asarray(run["generated"]) - run["input_image"]).max()
    # Adam moves a pixel by about the learning rate (2.0) per step at most: starting from the
    # zeros the Variable is initialised with, instead of input_image, would be far off.
    assert 0.1 < moved < 10, f"the result is {moved:.1f} away from input_image after 3 steps"
