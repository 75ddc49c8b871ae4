"""load_vgg_model on MatConvNet-layout fixtures: structure, shapes, numerics, bad files."""
import numpy as np
import pytest

from grading.mat_fixture import conv_weights, scaled_widths, vgg19_layers, write_vgg19_mat
from nst_course import convs
from nst_utils import CONFIG, load_vgg_model, tf

SCALE = 1 / 32
EXPECTED_KEYS = ["input", "conv1_1", "conv1_2", "avgpool1", "conv2_1", "conv2_2", "avgpool2",
                 "conv3_1", "conv3_2", "conv3_3", "conv3_4", "avgpool3",
                 "conv4_1", "conv4_2", "conv4_3", "conv4_4", "avgpool4",
                 "conv5_1", "conv5_2", "conv5_3", "conv5_4", "avgpool5"]
# (height, width) per block for a 300x400 input: each SAME 2x2 pooling halves it, rounding up
SPATIAL = {1: (300, 400), 2: (150, 200), 3: (75, 100), 4: (38, 50), 5: (19, 25)}
POOLED = {1: (150, 200), 2: (75, 100), 3: (38, 50), 4: (19, 25), 5: (10, 13)}


def expected_shape(key, widths):
    block = int(key[-3] if key.startswith("conv") else key[-1])
    height, width = (SPATIAL if key.startswith("conv") else POOLED)[block]
    return (1, height, width, widths[block - 1])


LAYOUTS = {
    "current, bias (N,1), with fc and meta": dict(),
    "current, bias (1,N)": dict(bias_layout="row"),
    "beta16 field order, top-level normalization": dict(layout="beta16"),
    "beta16, bias (1,N), no fc, no meta": dict(layout="beta16", bias_layout="row",
                                               with_fc=False, with_meta=False),
}


@pytest.mark.parametrize("options", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_model_dict_has_every_layer_in_order_with_its_shape(tmp_path, options):
    path = write_vgg19_mat(tmp_path / "vgg.mat", width_scale=SCALE, **options)
    tf.reset_default_graph()
    model = load_vgg_model(str(path))
    assert list(model) == EXPECTED_KEYS
    widths = scaled_widths(SCALE)
    for key in EXPECTED_KEYS[1:]:
        assert tuple(model[key].shape.as_list()) == expected_shape(key, widths), key
    assert isinstance(model["input"], tf.Variable)
    assert model["input"].dtype.base_dtype == tf.float32
    assert model["input"].shape.as_list() == [1, CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH, 3]


def test_real_vgg19_widths_give_the_expected_shapes(tmp_path):
    path = write_vgg19_mat(tmp_path / "full.mat", width_scale=1.0, with_fc=False)
    tf.reset_default_graph()
    model = load_vgg_model(str(path))
    for key in EXPECTED_KEYS[1:]:
        assert tuple(model[key].shape.as_list()) == expected_shape(key, [64, 128, 256, 512, 512])


def conv3x3_relu(x, kernel, bias):
    """NumPy reference: stride 1, SAME padding, cross-correlation as TF does, + bias, ReLU."""
    height, width, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((height, width, kernel.shape[3]))
    for dy in range(3):
        for dx in range(3):
            out += padded[dy:dy + height, dx:dx + width] @ kernel[dy, dx]
    return np.maximum(out + bias, 0)


def avg_pool_2x2_same(x):
    """NumPy reference: 2x2 windows, stride 2, padding cells not counted in the average."""
    height, width, channels = x.shape
    padded = np.full((height + height % 2, width + width % 2, channels), np.nan)
    padded[:height, :width] = x
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, channels)
    return np.nanmean(blocks, axis=(1, 3))


def test_forward_pass_matches_numpy_conv_bias_relu_and_average_pooling(tmp_path):
    layers = vgg19_layers(width_scale=SCALE, seed=7)
    path = write_vgg19_mat(tmp_path / "vgg.mat", layers=layers)
    weights = conv_weights(layers)
    image = np.random.default_rng(0).uniform(-120, 135, (1, 300, 400, 3)).astype(np.float32)

    tf.reset_default_graph()
    model = load_vgg_model(str(path))
    with tf.Session() as sess:
        sess.run(model["input"].assign(image))
        got = sess.run({key: model[key] for key in EXPECTED_KEYS[1:]})

    x = image[0].astype(np.float64)
    for key in EXPECTED_KEYS[1:]:
        x = avg_pool_2x2_same(x) if key.startswith("avgpool") else conv3x3_relu(x, *weights[key])
        np.testing.assert_allclose(got[key][0], x, rtol=1e-4, atol=1e-4 * np.abs(x).max(),
                                   err_msg=key)


def test_kernels_are_used_without_spatial_transpose(tmp_path):
    """The file's kernels are used as stored (as the course did: the reference costs depend on
    it); an asymmetric kernel would show a transpose."""
    layers = vgg19_layers(width_scale=SCALE)
    kernel, bias = layers[0][0, 0]["weights"][0]
    kernel[...], bias[...] = 0, 0
    kernel[0, 2, 0, :] = 1  # picks the input pixel up-right of each output pixel, red channel
    path = write_vgg19_mat(tmp_path / "vgg.mat", layers=layers)
    image = np.zeros((1, 300, 400, 3), np.float32)
    image[0, 10, 20, 0] = 5.0
    tf.reset_default_graph()
    model = load_vgg_model(str(path))
    with tf.Session() as sess:
        sess.run(model["input"].assign(image))
        out = sess.run(model["conv1_1"])[0, :, :, 0]
    assert out[11, 19] == pytest.approx(5.0, abs=1e-4)  # output at (y+1, x-1) sees (y, x)
    assert out[9, 21] == pytest.approx(0.0, abs=1e-4)


# ----- bad input: one clear exception naming the file -----

def write_text(path):
    path.write_text("this is not a MATLAB file\n")


def write_truncated(path):
    write_vgg19_mat(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_without_layers(path):
    import scipy.io
    scipy.io.savemat(str(path), {"something_else": np.ones(3)})


def write_too_few_layers(path):
    write_vgg19_mat(path, layers=vgg19_layers(with_fc=False)[:20])


def write_renamed_layer(path):
    layers = vgg19_layers()
    layers[19][0, 0]["name"] = "conv4_9"
    write_vgg19_mat(path, layers=layers)


def write_5x5_kernel(path):
    layers = vgg19_layers()
    kernel, bias = layers[0][0, 0]["weights"][0]
    layers[0][0, 0]["weights"][0, 0] = np.zeros((5, 5) + kernel.shape[2:], np.float32)
    write_vgg19_mat(path, layers=layers)


def write_unchained_channels(path):
    layers = vgg19_layers()
    kernel = layers[5][0, 0]["weights"][0, 0]  # conv2_1 reads conv1_2's output
    layers[5][0, 0]["weights"][0, 0] = np.zeros(kernel.shape[:2] + (kernel.shape[2] + 1,)
                                                + kernel.shape[3:], np.float32)
    write_vgg19_mat(path, layers=layers)


def write_wrong_bias_count(path):
    layers = vgg19_layers()
    layers[2][0, 0]["weights"][0, 1] = np.zeros((1, 1), np.float32)
    write_vgg19_mat(path, layers=layers)


def write_layer_without_weights(path):
    layers = vgg19_layers()
    layers[0] = np.array([[("conv1_1", "conv")]], dtype=[("name", object), ("type", object)])
    write_vgg19_mat(path, layers=layers)


BAD_FILES = {
    "not a mat file": (write_text, "could not be read as a MATLAB .mat file"),
    "truncated download": (write_truncated, "truncated or corrupt"),
    "no layers variable": (write_without_layers, "no 'layers' cell array"),
    "too few layers": (write_too_few_layers, "has 20 layers"),
    "wrong layer name": (write_renamed_layer, "layer 19 is 'conv4_9', expected 'conv4_1'"),
    "5x5 kernel": (write_5x5_kernel, "conv1_1 has a kernel of shape (5, 5, 3, 2)"),
    "channels do not chain": (write_unchained_channels, "conv2_1 has a kernel of shape"),
    "bias count": (write_wrong_bias_count, "conv1_2 has 1 biases for 2 output channels"),
    "no weights field": (write_layer_without_weights, "layer 0 is not a conv layer struct"),
}


@pytest.mark.parametrize("writer, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_weights_file_raises_value_error_naming_file_and_problem(tmp_path, writer, message):
    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    writer(path)
    with pytest.raises(ValueError) as raised:
        load_vgg_model(str(path))
    assert str(path) in str(raised.value)
    assert message in str(raised.value)
    assert "Download it again" in str(raised.value)


def test_missing_weights_file_says_where_to_get_it(tmp_path):
    path = tmp_path / "pretrained-model" / "imagenet-vgg-verydeep-19.mat"
    with pytest.raises(FileNotFoundError) as raised:
        load_vgg_model(str(path))
    message = str(raised.value)
    assert str(path) in message
    assert "vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat" in message


def plain_vgg_layer(image, weights, last):
    """The layers up to `last` built with stock TensorFlow ops and gradients, for comparison."""
    x = image
    for name in EXPECTED_KEYS[1:]:
        if name.startswith("avgpool"):
            x = tf.nn.avg_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
        else:
            kernel, bias = weights[name]
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=[1, 1, 1, 1], padding="SAME") + bias)
        if name == last:
            return x


@pytest.fixture
def winograd_from_block_3(monkeypatch):
    """Small files' blocks 3-5 by Winograd, as the real file's (they are narrower than 256)."""
    monkeypatch.setattr(convs, "WINOGRAD_MIN_CHANNELS", scaled_widths(SCALE)[2])


@pytest.mark.parametrize("last", ["conv2_1", "conv5_1"])
def test_gradient_with_respect_to_input_matches_stock_tensorflow(tmp_path, last,
                                                                 winograd_from_block_3):
    """conv2_1: direct convs only; conv5_1: also back through the Winograd convs of blocks 3-5."""
    layers = vgg19_layers(width_scale=SCALE, seed=3)
    path = write_vgg19_mat(tmp_path / "vgg.mat", layers=layers)
    rng = np.random.default_rng(4)
    image = rng.uniform(-120, 135, (1, 300, 400, 3)).astype(np.float32)
    tf.reset_default_graph()
    model = load_vgg_model(str(path))
    mix = tf.constant(rng.normal(size=model[last].shape.as_list()).astype(np.float32))
    ours = tf.gradients(tf.reduce_sum(model[last] * mix), model["input"])[0]
    stock_input = tf.Variable(image)
    stock = tf.gradients(tf.reduce_sum(plain_vgg_layer(stock_input, conv_weights(layers), last)
                                       * mix), stock_input)[0]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(model["input"].assign(image))
        got, expected = sess.run([ours, stock])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_training_step_computes_no_kernel_gradients(tiny_vgg_path, winograd_from_block_3):
    """The kernels are constants: TF1's optimizer must not spend time on their gradients."""
    tf.reset_default_graph()
    model = load_vgg_model(str(tiny_vgg_path))
    tf.train.AdamOptimizer(2.0).minimize(tf.reduce_sum(model["conv5_1"]))
    op_types = [op.type for op in tf.get_default_graph().get_operations()]
    assert "Conv2DBackpropFilter" not in op_types
    assert "Conv2DBackpropInput" not in op_types
    # blocks 1-2 (4 convs) are direct: 4 forward convs, and one forward conv (flipped kernel)
    # for each of them back to the input
    assert op_types.count("Conv2D") == 4 + 4
    # blocks 3-5 (12 convs) by Winograd: 16 matrix products each, and 16 for each of the 9
    # gradients from conv5_1 back to block 3; none for a kernel's gradient
    assert op_types.count("MatMul") == 16 * (12 + 9)


def test_narrow_convs_run_direct(tiny_vgg_path):
    """Winograd only pays from 256 channels: the small files the tests and the grader use run
    every conv directly (one Conv2D each, no matrix products)."""
    tf.reset_default_graph()
    load_vgg_model(str(tiny_vgg_path))
    op_types = [op.type for op in tf.get_default_graph().get_operations()]
    assert op_types.count("Conv2D") == 16 and "MatMul" not in op_types
