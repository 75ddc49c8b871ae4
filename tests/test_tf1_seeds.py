"""Importing nst_utils (its nst_course.tf1) restores TF 1.x's op-seed rule, so the test cells print the notebook's
Expected Output values."""
import importlib

import numpy as np
from tensorflow.python.framework import random_seed

from nst_course import tf1
from nst_utils import tf
from grading.references import GA, J_CONTENT, J_STYLE_LAYER, np_content_cost, np_layer_style_cost
from grading.worker import run_test_cell


def test_gram_matrix_cell_values_match_tf1_reference():
    (A,) = run_test_cell([[3, 2]])
    np.testing.assert_allclose(A @ A.T, GA, rtol=1e-5)


def test_content_cost_cell_values_match_tf1_reference():
    a_C, a_G = run_test_cell([[1, 4, 4, 3], [1, 4, 4, 3]])
    np.testing.assert_allclose(np_content_cost(a_C, a_G), J_CONTENT, rtol=1e-5)


def test_layer_style_cost_cell_values_match_tf1_reference():
    a_S, a_G = run_test_cell([[1, 4, 4, 3], [1, 4, 4, 3]])
    np.testing.assert_allclose(np_layer_style_cost(a_S, a_G), J_STYLE_LAYER, rtol=1e-5)


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
    before = dict(vars(tf1))
    try:
        importlib.reload(tf1)
        importlib.reload(tf1)
    finally:  # the module's objects as every other test imported them
        vars(tf1).update(before)
    assert random_seed.get_seed.tf2_get_seed is original
    assert getattr(original, "tf2_get_seed", None) is None
    (A,) = run_test_cell([[3, 2]])
    np.testing.assert_allclose(A @ A.T, GA, rtol=1e-5)


def test_tf_is_the_v1_api_in_graph_mode():
    assert tf.__name__ == "tensorflow.compat.v1"
    assert not tf.executing_eagerly()
    for name in ("Session", "InteractiveSession", "set_random_seed", "random_normal",
                 "global_variables_initializer", "reset_default_graph"):
        assert hasattr(tf, name), name
    assert hasattr(tf.train, "AdamOptimizer")
