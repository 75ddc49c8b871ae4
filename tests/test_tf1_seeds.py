"""Importing nst_utils restores TF 1.x's op-seed rule, so SPEC section 4's reference values appear."""
import importlib

import numpy as np
from tensorflow.python.framework import random_seed

import nst_utils
from nst_utils import tf

GA = np.array([[6.42230511, -4.42912197, -2.09668207],
               [-4.42912197, 19.46583748, 19.56387138],
               [-2.09668207, 19.56387138, 20.6864624]])


def draw(*shapes):
    """Run SPEC's test-cell recipe: fresh graph, graph seed 1, random_normal(mean=1, stddev=4)."""
    tf.reset_default_graph()
    with tf.Session() as sess:
        tf.set_random_seed(1)
        return sess.run([tf.random_normal(shape, mean=1, stddev=4) for shape in shapes])


def unroll(a):
    """(1, n_H, n_W, n_C) -> (n_C, n_H*n_W)."""
    return a.reshape(-1, a.shape[-1]).T


def test_gram_matrix_cell_values_match_tf1_reference():
    (A,) = draw([3, 2])
    np.testing.assert_allclose(A @ A.T, GA, rtol=1e-5)


def test_content_cost_cell_values_match_tf1_reference():
    a_C, a_G = draw([1, 4, 4, 3], [1, 4, 4, 3])
    np.testing.assert_allclose(np.sum((a_C - a_G) ** 2) / (4 * 4 * 4 * 3), 6.76559, rtol=1e-5)


def test_layer_style_cost_cell_values_match_tf1_reference():
    a_S, a_G = draw([1, 4, 4, 3], [1, 4, 4, 3])
    GS, GG = unroll(a_S) @ unroll(a_S).T, unroll(a_G) @ unroll(a_G).T
    np.testing.assert_allclose(np.sum((GS - GG) ** 2) / (4 * 3 ** 2 * 16 ** 2), 9.19028, rtol=1e-5)


def test_op_seed_is_the_graph_version_when_the_op_is_created():
    tf.reset_default_graph()
    tf.set_random_seed(1)
    tf.constant(0.0)
    graph = tf.get_default_graph()
    assert random_seed.get_seed(None) == (1, graph.version)
    assert random_seed.get_seed(5) == (1, 5)  # an op's own seed still wins


def test_without_graph_seed_ops_stay_unseeded():
    tf.reset_default_graph()
    assert random_seed.get_seed(None) == (None, None)


def test_importing_again_does_not_stack_the_patch():
    original = random_seed.get_seed.tf2_get_seed
    importlib.reload(nst_utils)
    importlib.reload(nst_utils)
    assert random_seed.get_seed.tf2_get_seed is original
    assert getattr(original, "tf2_get_seed", None) is None
    (A,) = draw([3, 2])
    np.testing.assert_allclose(A @ A.T, GA, rtol=1e-5)


def test_tf_is_the_v1_api_in_graph_mode():
    assert tf.__name__ == "tensorflow.compat.v1"
    assert not tf.executing_eagerly()
    for name in ("Session", "InteractiveSession", "set_random_seed", "random_normal",
                 "global_variables_initializer", "reset_default_graph"):
        assert hasattr(tf, name), name
    assert hasattr(tf.train, "AdamOptimizer")
