"""SPEC section 4's reference values, the recipe of the notebook's test cells, NumPy references
for the cost formulas of SPEC section 3, and section 4's wiring with reference costs."""
import numpy as np

from nst_utils import tf

J_CONTENT = 6.76559
GA = np.array([[6.42230511, -4.42912197, -2.09668207],
               [-4.42912197, 19.46583748, 19.56387138],
               [-2.09668207, 19.56387138, 20.6864624]])
J_STYLE_LAYER = 9.19028
J_TOTAL = 35.34667875478276  # total_cost after np.random.seed(3), two np.random.randn() draws


def run_test_cell(shapes, function=None):
    """A notebook test cell: in a fresh graph and Session with tf.set_random_seed(1), one
    tf.random_normal(shape, mean=1, stddev=4) per shape, in order; returns function(*those)
    evaluated, or the draws themselves when no function is given."""
    tf.reset_default_graph()
    with tf.Session() as sess:
        tf.set_random_seed(1)
        draws = [tf.random_normal(shape, mean=1, stddev=4) for shape in shapes]
        return sess.run(draws if function is None else function(*draws))


def np_content_cost(a_C, a_G):
    _, n_H, n_W, n_C = a_G.shape
    return np.sum((a_C.astype(np.float64) - a_G) ** 2) / (4 * n_H * n_W * n_C)


def np_unroll(a):
    """(1, n_H, n_W, n_C) -> (n_C, n_H*n_W): reshape to (n_H*n_W, n_C), then transpose."""
    return a.reshape(-1, a.shape[-1]).T.astype(np.float64)


def np_layer_style_cost(a_S, a_G):
    _, n_H, n_W, n_C = a_G.shape
    GS, GG = np_unroll(a_S) @ np_unroll(a_S).T, np_unroll(a_G) @ np_unroll(a_G).T
    return np.sum((GS - GG) ** 2) / (4 * n_C ** 2 * (n_H * n_W) ** 2)


STYLE_LAYERS = [("conv1_1", 0.2), ("conv2_1", 0.2), ("conv3_1", 0.2), ("conv4_1", 0.2),
                ("conv5_1", 0.2)]


def section4_costs(sess, model, content_image, style_image):
    """SPEC section 3's section-4 wiring with reference cost functions, for (1, H, W, 3) inputs
    already normalised: (J, J_content, J_style) with alpha = 10, beta = 40."""
    def gram(a):
        unrolled = tf.transpose(tf.reshape(a, [-1, a.shape[-1]]))
        return tf.matmul(unrolled, unrolled, transpose_b=True)

    sess.run(model["input"].assign(content_image))
    a_C, a_G = sess.run(model["conv4_2"]), model["conv4_2"]
    J_content = tf.reduce_sum(tf.square(a_C - a_G)) / (4 * np.prod(a_C.shape[1:]))
    sess.run(model["input"].assign(style_image))
    J_style = 0
    for layer, coeff in STYLE_LAYERS:
        a_S, a_G = sess.run(model[layer]), model[layer]
        _, n_H, n_W, n_C = a_S.shape
        J_style += coeff * tf.reduce_sum(tf.square(gram(a_S) - gram(a_G))) / (
            4 * n_C ** 2 * (n_H * n_W) ** 2)
    return 10 * J_content + 40 * J_style, J_content, J_style
