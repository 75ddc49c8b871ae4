"""nst_course.convs.conv3x3 by Winograd's F(2x2, 3x3): the same activations and input gradient as
TF's direct conv, within float32 round-off, at each conv shape VGG-19 has on a 300x400 image."""
import numpy as np
import pytest

from nst_course.convs import conv3x3, tf

# (height, width, C_in, C_out) of the convs load_vgg_model computes by Winograd (blocks 3-5),
# plus small odd and even shapes for the tiling at the edges
SHAPES = {
    "conv3_1": (75, 100, 128, 256), "conv3_2": (75, 100, 256, 256),
    "conv4_1": (38, 50, 256, 512), "conv4_2": (38, 50, 512, 512),
    "conv5_1": (19, 25, 512, 512),
    "odd 5x7": (5, 7, 3, 4), "even 4x6": (4, 6, 5, 2), "1x1": (1, 1, 2, 3),
}


def conv_float64(x, kernel):
    """NumPy reference in float64: stride 1, SAME, cross-correlation as TF does."""
    height, width, _ = x.shape
    padded = np.pad(x.astype(np.float64), ((1, 1), (1, 1), (0, 0)))
    return sum(padded[dy:dy + height, dx:dx + width] @ kernel[dy, dx].astype(np.float64)
               for dy in range(3) for dx in range(3))


def relative_error(got, expected):
    return np.abs(got - expected).max() / np.abs(expected).max()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_winograd_conv_and_input_gradient_equal_the_direct_conv(shape):
    """Measured (max |difference| / max |direct value|), activations / input gradient, against
    TF's direct conv: conv3_1 1.6e-06 / 1.7e-06, conv3_2 2.1e-06 / 2.3e-06, conv4_1 2.1e-06 /
    2.2e-06, conv4_2 2.6e-06 / 2.5e-06, conv5_1 1.9e-06 / 2.4e-06. Against float64, Winograd's
    error is below the direct conv's own (e.g. conv4_2: 6e-07, direct 2.6e-06)."""
    height, width, c_in, c_out = shape
    rng = np.random.default_rng(sum(shape))
    kernel = rng.normal(0, np.sqrt(2 / (9 * c_in)), (3, 3, c_in, c_out)).astype(np.float32)
    image = np.maximum(rng.normal(size=(1, height, width, c_in)), 0).astype(np.float32)
    mix = rng.normal(size=(1, height, width, c_out)).astype(np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.Variable(image)
        winograd = conv3x3(x, kernel, winograd=True)
        stock = tf.nn.conv2d(x, kernel, strides=[1, 1, 1, 1], padding="SAME")
        gradients = [tf.gradients(tf.reduce_sum(y * mix), x)[0] for y in (winograd, stock)]
        sess.run(tf.global_variables_initializer())
        y, y_stock, g, g_stock = sess.run([winograd, stock] + gradients)

    assert y.shape == y_stock.shape == (1, height, width, c_out) and y.dtype == np.float32
    assert relative_error(y, y_stock) < 1e-5
    assert relative_error(g, g_stock) < 1e-5
    # within float32 round-off: no further from the exact values than TF's own conv
    exact = conv_float64(image[0], kernel)
    assert relative_error(y[0], exact) <= 2 * relative_error(y_stock[0], exact) + 1e-6
    exact_gradient = conv_float64(mix[0], kernel[::-1, ::-1].transpose(0, 1, 3, 2))
    assert relative_error(g[0], exact_gradient) <= (
        2 * relative_error(g_stock[0], exact_gradient) + 1e-6)


def test_direct_path_gives_the_same_conv_and_gradient():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
    image = rng.normal(size=(1, 9, 8, 4)).astype(np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.Variable(image)
        ours = conv3x3(x, kernel)
        stock = tf.nn.conv2d(x, kernel, strides=[1, 1, 1, 1], padding="SAME")
        gradients = [tf.gradients(tf.reduce_sum(y * y), x)[0] for y in (ours, stock)]
        sess.run(tf.global_variables_initializer())
        y, y_stock, g, g_stock = sess.run([ours, stock] + gradients)
    np.testing.assert_allclose(y, y_stock, rtol=1e-5, atol=1e-5 * np.abs(y_stock).max())
    np.testing.assert_allclose(g, g_stock, rtol=1e-5, atol=1e-5 * np.abs(g_stock).max())
