"""The assignment's reference values (the notebook's "Expected Output" cells) and the cost
formulas in float64 NumPy. Only the grader's process and our tests import this module: a worker
can neither import nor read it (grading/confinement.py)."""
import numpy as np

# Section 4 of the notebook: the layers its costs read, their weights, how long it runs and
# which iterations model_nn reports (and saves a picture of)
CONTENT_LAYER = "conv4_2"
STYLE_LAYERS = [("conv1_1", 0.2), ("conv2_1", 0.2), ("conv3_1", 0.2), ("conv4_1", 0.2),
                ("conv5_1", 0.2)]
ALPHA, BETA = 10, 40
ITERATIONS = 200
REPORTED = list(range(0, ITERATIONS, 20))

J_CONTENT = 6.76559
GA = np.array([[6.42230511, -4.42912197, -2.09668207],
               [-4.42912197, 19.46583748, 19.56387138],
               [-2.09668207, 19.56387138, 20.6864624]])
J_STYLE_LAYER = 9.19028
J_TOTAL = 35.34667875478276  # total_cost after np.random.seed(3), two np.random.randn() draws


def np_content_cost(a_C, a_G):
    """sum((a_C - a_G)^2) / (4 n_H n_W n_C), the dimensions read from a_G."""
    _, n_H, n_W, n_C = a_G.shape
    return np.sum((a_C.astype(np.float64) - a_G) ** 2) / (4 * n_H * n_W * n_C)


def np_unroll(a):
    """(1, n_H, n_W, n_C) -> (n_C, n_H*n_W): reshape to (n_H*n_W, n_C), then transpose."""
    return a.reshape(-1, a.shape[-1]).T.astype(np.float64)


def np_layer_style_cost(a_S, a_G):
    """sum((GS - GG)^2) / (4 n_C^2 (n_H n_W)^2), with GS, GG the Gram matrices of the unrolled
    activations."""
    _, n_H, n_W, n_C = a_G.shape
    GS, GG = np_unroll(a_S) @ np_unroll(a_S).T, np_unroll(a_G) @ np_unroll(a_G).T
    return np.sum((GS - GG) ** 2) / (4 * n_C ** 2 * (n_H * n_W) ** 2)
