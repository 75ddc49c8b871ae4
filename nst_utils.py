"""Helpers for the Neural Style Transfer assignment: VGG-19 as TF1 tensors, image I/O, figures.

`from nst_utils import *` gives you the names in `__all__`: `tf` (TensorFlow's 1.x API, graph
mode), `np`, `imageio`, `CONFIG`, `load_vgg_model`, the image helpers, the test cells' verdict
and the figures of a run. The assignment's part of this file comes first; the course's own tools
(TensorFlow's quiet import with 1.x's seed rule, how the VGG-19 file is read and its convs
computed, the weights' download and check, the headless run) follow the "Course tools" marker.
"""
import argparse
import contextlib
import ctypes
import hashlib
import http.client
import io
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request

import imageio.v2 as imageio
import numpy as np
import scipy.io

__all__ = [
    "tf", "np", "imageio", "CONFIG", "load_vgg_model", "generate_noise_image",
    "reshape_and_normalize_image", "load_image", "deprocess_image", "save_image", "check_value",
    "record_costs", "saving_to", "plot_summary", "plot_costs", "plot_iterations",
]

# `tf` is imported with the course tools below: quietly, in TensorFlow 1.x's graph mode, with
# TensorFlow 1.x's seed rule.


class CONFIG:
    IMAGE_WIDTH = 400
    IMAGE_HEIGHT = 300
    COLOR_CHANNELS = 3
    NOISE_RATIO = 0.6
    MEANS = np.array([123.68, 116.779, 103.939]).reshape((1, 1, 1, 3))
    VGG_MODEL = "pretrained-model/imagenet-vgg-verydeep-19.mat"
    STYLE_IMAGE = "images/swirling_brushstrokes_400x300.jpg"
    CONTENT_IMAGE = "images/chelsea_the_cat_400x300.jpg"
    OUTPUT_DIR = "output/"
    CONV_PRECISION = "float32"  # VGG-19's convs, read by load_vgg_model: or "bfloat16" (faster on
    # CPUs with AMX or AVX512-BF16; elsewhere float32 runs instead, see conv_plan)


def load_vgg_model(path):
    """Build VGG-19's conv layers from the .mat at `path` as a dict of tf.compat.v1 tensors.

    'input' is a (1, IMAGE_HEIGHT, IMAGE_WIDTH, 3) float32 Variable; convN_i are conv + bias +
    ReLU with the file's weights (as constants: gradients flow to the input only; the wide
    float32 convs on a CPU by Winograd's algorithm, see conv_plan and conv3x3); avgpoolN replace
    VGG's max pooling, as Gatys et al. suggest. The fully connected layers are not used. Every
    layer in the dict is float32; with CONFIG.CONV_PRECISION "bfloat16" the network between the
    input and them runs in bfloat16 (see _bfloat16_layers).
    """
    weights = read_vgg19_weights(path)
    precision, winograd = conv_plan()
    shape = (1, CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH, CONFIG.COLOR_CHANNELS)
    graph = {"input": tf.Variable(np.zeros(shape), dtype="float32")}
    if precision == "bfloat16":
        return _bfloat16_layers(graph, weights)
    previous = graph["input"]
    for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            name = f"conv{block}_{i}"
            kernel, bias = weights[name]
            conv = conv3x3(previous, kernel,
                           winograd=winograd and kernel.shape[3] >= WINOGRAD_MIN_CHANNELS)
            previous = graph[name] = tf.nn.relu(conv + tf.constant(bias), name=name)
        previous = graph[f"avgpool{block}"] = tf.nn.avg_pool(
            previous, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME",
            name=f"avgpool{block}")
    return graph


def generate_noise_image(content_image, noise_ratio=CONFIG.NOISE_RATIO):
    """Blend uniform noise in [-20, 20] with `content_image` (1, H, W, 3): the starting G."""
    noise_image = np.random.uniform(-20, 20, np.shape(content_image)).astype("float32")
    return noise_image * noise_ratio + content_image * (1 - noise_ratio)


def reshape_and_normalize_image(image):
    """(IMAGE_HEIGHT, IMAGE_WIDTH, 3) picture -> (1, H, W, 3) input for VGG, minus MEANS."""
    image = np.asarray(image)
    expected = (CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH, CONFIG.COLOR_CHANNELS)
    if image.shape != expected:
        raise ValueError(f"Expected an RGB image of shape {expected} (height, width, channels), "
                         f"got {image.shape}. Read your picture with load_image(path): it resizes "
                         f"and crops any image to {CONFIG.IMAGE_WIDTH}x{CONFIG.IMAGE_HEIGHT}.")
    return image[np.newaxis] - CONFIG.MEANS


def load_image(path, width=None, height=None):
    """Any picture Pillow reads -> (height, width, 3) uint8 RGB, scaled and centre-cropped to fill
    width x height (default: CONFIG's size as it is now) without distortion. Honours EXIF
    rotation; transparency becomes white."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    width, height = width or CONFIG.IMAGE_WIDTH, height or CONFIG.IMAGE_HEIGHT

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at '{path}'. Check the path (it is relative to "
                                f"{os.getcwd()}).")
    try:
        with Image.open(path) as opened:
            picture = ImageOps.exif_transpose(opened)  # also loads the pixels
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"'{path}' is not an image that can be read ({error}). Use a JPEG, PNG, "
                         f"BMP, GIF or WebP file.") from None
    if min(picture.size) < 32:
        raise ValueError(f"'{path}' is only {picture.width}x{picture.height} pixels; use a picture "
                         f"at least 32 pixels on each side (ideally {width}x{height} or more).")
    if picture.mode.startswith("I"):  # 16- or 32-bit greyscale: scale to 8 bits
        pixels = np.asarray(picture, dtype=np.float64)
        picture = Image.fromarray((pixels * 255 / max(pixels.max(), 1)).astype(np.uint8))
    if "A" in picture.mode or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        picture = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    fitted = ImageOps.fit(picture.convert("RGB"), (width, height), Image.LANCZOS)
    return np.asarray(fitted, dtype=np.uint8)


def deprocess_image(image):
    """(1, H, W, 3) model input -> (H, W, 3) uint8 picture: add MEANS back, clip to [0, 255]."""
    return np.clip(image[0] + CONFIG.MEANS[0], 0, 255).astype("uint8")


def save_image(path, image):
    """Write image[0], with the mean subtraction undone, to `path` (parent folders created)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    imageio.imwrite(path, deprocess_image(image))


# ----- feedback and pictures for the notebook -----

def check_value(name, value, expected, rtol=1e-5):
    """Print a one-line verdict comparing a test cell's value with its Expected Output."""
    ok = np.shape(value) == np.shape(expected) and np.allclose(value, expected, rtol=rtol, atol=0)
    if ok:
        print(f"\u2713 {name} matches the Expected Output")
    else:
        shown = np.array2string(np.asarray(expected), precision=8).replace("\n", "")
        print(f"\u2717 {name} does not match the Expected Output ({shown}): check your code above")
    return ok


ITERATION_REPORT = re.compile(r"Iteration (\d+) :\s*total cost = (\S+)\s*content cost = (\S+)"
                              r"\s*style cost = (\S+)")


@contextlib.contextmanager
def record_costs():
    """Inside `with record_costs() as costs:`, what model_nn prints still shows, and `costs`
    fills with (iteration, total, content, style) for each report it prints."""
    costs, printed, shown = [], io.StringIO(), sys.stdout

    class Tee(io.TextIOBase):
        def write(self, text):
            printed.write(text)
            return shown.write(text)

        def flush(self):
            shown.flush()

    with contextlib.redirect_stdout(Tee()):
        yield costs
    costs += [(int(i), float(t), float(c), float(s))
              for i, t, c, s in ITERATION_REPORT.findall(printed.getvalue())]


@contextlib.contextmanager
def saving_to(folder):
    """Inside `with saving_to(folder):`, CONFIG.OUTPUT_DIR is `folder` (model_nn and the figures
    save there); after the block it is what it was before, even if the block failed."""
    before = CONFIG.OUTPUT_DIR
    CONFIG.OUTPUT_DIR = os.path.join(folder, "")  # with a final "/": model_nn appends names
    try:
        yield CONFIG.OUTPUT_DIR
    finally:
        CONFIG.OUTPUT_DIR = before


def _as_picture(image):
    """A (1, H, W, 3) model input or an (H, W, 3) picture -> (H, W, 3) uint8."""
    return deprocess_image(image) if np.ndim(image) == 4 else np.asarray(image, dtype=np.uint8)


def _output_folder(folder):
    """`folder`, or CONFIG.OUTPUT_DIR as it is now when None."""
    return CONFIG.OUTPUT_DIR if folder is None else folder


def _save(figure, folder, name):
    """Save `figure` as name in `folder` (None: the output folder) and return it."""
    folder = _output_folder(folder)
    os.makedirs(folder, exist_ok=True)
    figure.savefig(os.path.join(folder, name), dpi=100, bbox_inches="tight")
    return figure


def plot_summary(content, style, generated, folder=None):
    """Content | style | generated side by side; saved as summary.png in `folder`."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, image, title in zip(axes, (content, style, generated),
                                ("content", "style", "generated")):
        ax.imshow(_as_picture(image))
        ax.set_title(title)
        ax.axis("off")
    return _save(figure, folder, "summary.png")


def plot_costs(costs, folder=None):
    """Total, content and style cost against iteration (log scale), from record_costs; saved as
    costs.png in `folder`."""
    import matplotlib.pyplot as plt

    if not costs:
        raise ValueError("No costs were recorded: run model_nn inside `with record_costs() as "
                         "costs:`, with at least one iteration.")
    iterations, totals, contents, styles = zip(*costs)
    figure, ax = plt.subplots(figsize=(7, 4))
    for values, label in ((totals, "total cost J"), (contents, "content cost"),
                          (styles, "style cost")):
        ax.plot(iterations, values, marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return _save(figure, folder, "costs.png")


def last_run_pictures(folder):
    """(iteration, file name) of the pictures model_nn's last run saved in `folder`, in order:
    its 0.png and those written since (a run writes 0.png first), not an earlier run's others."""
    saved = sorted((int(name[:-4]), name) for name in os.listdir(folder)
                   if re.fullmatch(r"\d+\.png", name))
    if not saved or saved[0][0] != 0:
        return []
    started = os.stat(os.path.join(folder, "0.png")).st_mtime_ns
    return [(iteration, name) for iteration, name in saved
            if os.stat(os.path.join(folder, name)).st_mtime_ns >= started]


def plot_iterations(folder=None):
    """A contact sheet of the pictures model_nn's last run saved in `folder` every 20 iterations
    (0.png, 20.png, ...; not those an earlier, longer run left); saved there as iterations.png."""
    import matplotlib.pyplot as plt

    folder = _output_folder(folder)
    saved = last_run_pictures(folder)
    if not saved:
        raise ValueError(f"No iteration pictures (0.png, 20.png, ...) in '{folder}': run model_nn.")
    columns = min(5, len(saved))
    rows = -(-len(saved) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (iteration, name) in zip(axes.flat, saved):
        ax.imshow(imageio.imread(os.path.join(folder, name)))
        ax.set_title(f"iteration {iteration}")
    return _save(figure, folder, "iterations.png")


# ================================================================================================
# Course tools: nothing below is needed to do the assignment. TensorFlow's import (a quiet start,
# the 1.x API, the 1.x seed rule), the VGG-19 file's reader and the convs of load_vgg_model (their
# precision; by Winograd's algorithm where that is faster), the weights' download and check, and
# `python -m nst_utils run`, the headless run of the whole notebook.
# ================================================================================================

# ----- TensorFlow: a quiet start, the 1.x API, the 1.x seed rule -----

# TensorFlow's C++ start-up notices go straight to the process's stderr, where Jupyter shows them
# in a student's cell as if they were errors: absl's "All log messages before absl::InitializeLog()
# ...", the CUDA stub's "Could not find cuda drivers" and, on first use, "failed call to cuInit"
# on a machine without an NVIDIA driver, oneDNN's and the CPU features' notices. They are held back
# while TensorFlow starts, and any other line is passed on; after that, TF_CPP_MIN_LOG_LEVEL 2
# lets TensorFlow's C++ errors through and hides its info and warning lines.
START_UP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\)|cudart_stub\.cc.*Could not find cuda "
    r"drivers|failed call to cuInit|oneDNN custom operations are on|cpu_feature_guard\.cc|"
    r"^To enable the following instructions:")


@contextlib.contextmanager
def _start_up_notices_held_back():
    """What is written to file descriptor 2 inside the block is kept, then passed on to
    sys.stderr without TensorFlow's START_UP_NOTICES."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):  # no stderr at all: nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not START_UP_NOTICES.search(line)))


def _nvidia_driver_present():
    try:
        ctypes.CDLL("libcuda.so.1")  # the driver's library, which TensorFlow loads for a GPU
    except OSError:
        return False
    return True


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ logs: errors only
with _start_up_notices_held_back():
    import tensorflow.compat.v1 as tf
    from tensorflow.python.framework import ops as _ops
    from tensorflow.python.framework import random_seed as _random_seed

    if sys.platform == "linux" and not _nvidia_driver_present():
        # TensorFlow's first look for a GPU logs the failed cuInit: let it look now. (Not with a
        # driver: CUDA must not start in a process that forks, as the grader's sandbox does.)
        tf.config.list_physical_devices("GPU")
    tf.get_logger().setLevel("ERROR")  # no deprecation notices for the TF1 API the course teaches
    tf.disable_v2_behavior()


# TensorFlow 1.x gave a random op with no seed of its own, under a graph-level seed, the
# graph's operation count at that moment (Graph.version) as its op seed; TensorFlow 2 counts
# seeded ops per graph instead, so the assignment's test cells would print other numbers than
# their "Expected Output". This wrapper restores the 1.x rule; it always wraps TF's original.
_tf2_get_seed = getattr(_random_seed.get_seed, "tf2_get_seed", _random_seed.get_seed)


def _tf1_get_seed(op_seed):
    graph = _ops.get_default_graph()
    if op_seed is None and graph.seed is not None and not tf.executing_eagerly():
        op_seed = graph.version
    return _tf2_get_seed(op_seed)


_tf1_get_seed.tf2_get_seed = _tf2_get_seed
_random_seed.get_seed = _tf1_get_seed


# ----- VGG-19: the weights file's reader, the convs load_vgg_model builds -----

VGG19_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
VGG19_BLOCKS = (2, 2, 4, 4, 4)  # conv layers in each of VGG-19's five blocks
WINOGRAD_MIN_CHANNELS = 256  # convs with this many outputs (VGG-19's blocks 3-5) measured faster
# by Winograd (benchmarks/RESULTS.md); narrower ones, as in the tests' small files, run direct

# The VGG kernels are constants, so only the gradient with respect to a conv's input is ever
# used: each conv below gets a custom gradient that computes just that (TF1's minimize() would
# otherwise also compute every kernel's gradient). For these stride-1, SAME, 3x3 convs the input
# gradient is itself a forward conv (kernel flipped in space, in/out channels swapped): as fast as
# TF's backward op with oneDNN, twice as fast without it, and it can take the Winograd path too.
# See benchmarks/RESULTS.md.

def _flipped(kernel):
    """The kernel whose forward conv is the input gradient of a conv with `kernel`."""
    return np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2))


# Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016) computes a 3x3 conv per 2x2 tile
# of output pixels from the 4x4 tile of input pixels around it, with 16 multiplications instead
# of 36:  output tile = A^T [(G k G^T) * (B^T d B)] A  for each input/output channel pair. With
# many channels the 16 products become 16 matrix products (tiles, C_in) x (C_in, C_out): 2.25
# times fewer FLOPs than the direct conv. G k G^T is computed once from the kernel (NumPy); B^T
# and A^T hold only 0 and +-1, so their transforms are sums and differences of slices.
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
# G g of the taps g reversed is G g with its rows in this order; so the flipped kernel's G k G^T
# (the input gradient's) is the kernel's, rows and columns in this order and channels swapped:
# no constants of its own
WINOGRAD_FLIP = (3, 1, 2, 0)


def _winograd_kernel(kernel):
    """G k G^T of a (3, 3, C_in, C_out) NumPy kernel: 4x4 lists of (C_in, C_out) constants."""
    transformed = np.einsum("ai,ijco,bj->abco", WINOGRAD_G, kernel.astype(np.float64), WINOGRAD_G)
    return [[tf.constant(transformed[a, b].astype(np.float32)) for b in range(4)]
            for a in range(4)]


def _b_t(d0, d1, d2, d3):
    """B^T d for 4 rows (or columns) d0..d3 of input tiles."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _a_t(m0, m1, m2, m3):
    """A^T m for 4 rows (or columns) m0..m3 of products: 2 rows of output tiles."""
    return m0 + m1 + m2, m1 - m2 - m3


def _winograd_conv2d(x, transformed, flip=False):
    """Stride-1, SAME conv of x with the kernel whose _winograd_kernel is `transformed` (with
    flip=True: with that kernel flipped, as for its input gradient), by F(2x2, 3x3)."""
    n, height, width, c_in = x.shape.as_list()
    tiles_h, tiles_w = -(-height // 2), -(-width // 2)  # 2x2 output tiles, rounded up
    # Pad by 1 (SAME) and up to whole tiles: tile (i, j) reads padded[2i:2i+4, 2j:2j+4]. Its 4
    # columns 2j..2j+3 are sliced from a reshape that puts each pair of columns side by side in
    # the channels, its 4 rows from one that splits the rows into pairs: slices with step 1 (TF
    # copies slices with a step of 2 about 20 times more slowly).
    padded = tf.pad(x, [[0, 0], [1, 2 * tiles_h + 1 - height], [1, 2 * tiles_w + 1 - width],
                        [0, 0]])
    pairs = tf.reshape(padded, [n, 2 * tiles_h + 2, tiles_w + 1, 2 * c_in])
    columns = _b_t(pairs[:, :, :-1, :c_in], pairs[:, :, :-1, c_in:], pairs[:, :, 1:, :c_in],
                   pairs[:, :, 1:, c_in:])
    order = WINOGRAD_FLIP if flip else range(4)
    products = [[None] * 4 for _ in range(4)]
    for b, column in enumerate(columns):
        pairs = tf.reshape(column, [n, tiles_h + 1, 2, tiles_w, c_in])
        for a, tile in enumerate(_b_t(pairs[:, :-1, 0], pairs[:, :-1, 1], pairs[:, 1:, 0],
                                      pairs[:, 1:, 1])):
            # point (a, b) of every tile times G k G^T at (a, b): one matrix product
            products[a][b] = tf.matmul(tf.reshape(tile, [-1, c_in]),
                                       transformed[order[a]][order[b]], transpose_b=flip)
    rows = [_a_t(*(products[a][b] for a in range(4))) for b in range(4)]
    outputs = [out for i in range(2) for out in _a_t(*(rows[b][i] for b in range(4)))]
    # outputs (0, 0), (0, 1), (1, 0), (1, 1) of each tile side by side in the channels -> pixels
    c_out = outputs[0].shape.as_list()[-1]
    tiles = tf.reshape(tf.concat(outputs, axis=-1), [n, tiles_h, tiles_w, 4 * c_out])
    y = tf.nn.depth_to_space(tiles, 2)
    return y if (2 * tiles_h, 2 * tiles_w) == (height, width) else y[:, :height, :width]


def conv3x3(x, kernel, winograd=False, precision="float32"):
    """Stride-1, SAME conv of x with a (3, 3, C_in, C_out) NumPy kernel, direct or by Winograd;
    its gradient goes to x only, as the same kind of conv with the flipped kernel. With precision
    "bfloat16" (direct only), the kernel is rounded to bfloat16, and so is a float32 x (or the
    gradient) for the conv, whose result comes back in x's dtype: float32 for a float32 x, with a
    cast each way; a bfloat16 x gives a bfloat16 result, no cast."""
    if winograd:
        if precision != "float32":
            raise ValueError(f"Winograd's convs are float32 only, not {precision}")
        transformed = _winograd_kernel(kernel)

        def conv2d(x, flip=False):
            return _winograd_conv2d(x, transformed, flip)
    else:
        def conv2d(x, flip=False):
            kernel_ = tf.constant(_flipped(kernel) if flip else kernel, dtype=precision)
            return tf.cast(tf.nn.conv2d(tf.cast(x, precision), kernel_, 1, "SAME"), x.dtype)

    @tf.custom_gradient
    def conv(x):
        return conv2d(x), lambda grad: conv2d(grad, flip=True)
    return conv(x)


def _bfloat16_layers(graph, weights):
    """load_vgg_model's layers in bfloat16 from graph['input'] on: the input is cast once, and
    the convs, biases, ReLUs, pools and their gradients run in bfloat16. What the dict holds for
    each layer is a float32 copy (a Cast named as the layer): a graph runs only the ops a fetch
    needs, so a copy costs nothing unless the costs or a sess.run read that layer, and the
    gradient of what they read flows back through it (and the input's cast) to the float32
    input."""
    previous = tf.cast(graph["input"], tf.bfloat16, name="input_bfloat16")
    for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            name = f"conv{block}_{i}"
            kernel, bias = weights[name]
            conv = conv3x3(previous, kernel, precision="bfloat16")
            previous = tf.nn.relu(conv + tf.constant(bias, dtype=tf.bfloat16),
                                  name=f"{name}_bfloat16")
            graph[name] = tf.cast(previous, tf.float32, name=name)
        name = f"avgpool{block}"
        previous = tf.nn.avg_pool(previous, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1],
                                  padding="SAME", name=f"{name}_bfloat16")
        graph[name] = tf.cast(previous, tf.float32, name=name)
    return graph


# ----- the convs' precision: float32, or bfloat16 where the machine computes it natively -----

# bfloat16 keeps float32's 8 exponent bits and 7 of its 23 fraction bits: about 2-3 significant
# digits. CPUs with AVX512-BF16 or AMX-BF16 (which oneDNN, in TensorFlow's wheel, uses) multiply
# it several times faster than float32; elsewhere it is emulated, no faster than float32
# (benchmarks/RESULTS.md), so conv_plan runs float32 there unless FORCE_BFLOAT16 is set.
CONV_PRECISIONS = ("float32", "bfloat16")
BFLOAT16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # in /proc/cpuinfo's flags
FORCE_BFLOAT16 = "NST_FORCE_BFLOAT16"  # =1: bfloat16 even where emulated (tests, benchmarks)
_said = set()


def _say_once(text):
    """Print `text`, unless this process has printed it already."""
    if text not in _said:
        _said.add(text)
        print(text)


def _cpu_flags():
    """The processor's feature flags (Linux's /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), "flags :")
    except OSError:
        return set()
    return set(line.split(":", 1)[1].split())


def _onednn_on():
    """Whether TensorFlow runs its CPU ops by oneDNN (by default on CPUs with bfloat16 units;
    TF_ENABLE_ONEDNN_OPTS=0 switches it off)."""
    from tensorflow.python.util import _pywrap_util_port

    return _pywrap_util_port.IsMklEnabled()


def _no_native_bfloat16(gpus):
    """Why the convs' device would only emulate bfloat16 (`gpus`: the GPUs TensorFlow sees, which
    it places convs on), or None where it computes bfloat16 natively."""
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        if details.get("compute_capability", (0, 0)) >= (8, 0):
            return None
        return "the GPU has no bfloat16 units (NVIDIA's have them from compute capability 8.0)"
    if not BFLOAT16_CPU_FLAGS & _cpu_flags():
        return "this processor has no native bfloat16 (neither AVX512-BF16 nor AMX-BF16)"
    if not _onednn_on():
        return "TensorFlow's oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0), which bfloat16 needs"
    return None


def _visible_gpus():
    """The GPUs TensorFlow would place the convs on. There are none without an NVIDIA driver or
    with CUDA_VISIBLE_DEVICES empty, and then CUDA is not started to learn it: it must not start
    in a process that forks (the grader's sandbox, which hides the GPUs that way)."""
    if not _nvidia_driver_present() or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return []
    return tf.config.list_physical_devices("GPU")


def conv_plan():
    """(precision, Winograd allowed) for the convs of a model built now: CONFIG.CONV_PRECISION,
    but float32, said once, where bfloat16 would be emulated; Winograd for float32 on a CPU (it
    measured faster there; a GPU's library picks its own algorithms for the direct conv)."""
    precision = CONFIG.CONV_PRECISION
    if precision not in CONV_PRECISIONS:
        raise ValueError(f"CONFIG.CONV_PRECISION is {precision!r}: use one of "
                         f"{', '.join(map(repr, CONV_PRECISIONS))}.")
    gpus = _visible_gpus()
    if precision == "bfloat16" and os.environ.get(FORCE_BFLOAT16) != "1":
        reason = _no_native_bfloat16(gpus)
        if reason:
            _say_once(f"CONFIG.CONV_PRECISION is 'bfloat16', but {reason}: emulated, it would "
                      f"be no faster, so VGG-19's convs run in float32.")
            precision = "float32"
    return precision, precision == "float32" and not gpus


def vgg19_file_layer_names():
    """Names of layers 0-36 of MatConvNet's VGG-19 file: convN_i, reluN_i, ..., poolN per block."""
    names = []
    for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def read_vgg19_weights(path):
    """Return {conv layer name: (kernel, bias)} from a MatConvNet VGG-19 .mat file, checked.

    Fields are read by name, so both the current file and the older "beta16" release work.
    Raises FileNotFoundError (with where to get the file) or ValueError (what is wrong).
    """
    if not os.path.isfile(path):
        fetch_vgg19(path)  # downloads it where that is wanted, else raises FileNotFoundError
    advice = "Download it again from " + VGG19_URL

    try:
        layers = scipy.io.loadmat(path, variable_names=["layers"]).get("layers")
    except Exception as error:  # scipy raises many kinds for a non-.mat or truncated file
        raise ValueError(f"'{path}' could not be read as a MATLAB .mat file ({error}). "
                         f"It may be truncated or corrupt. {advice}") from None
    if layers is None or layers.dtype != object:
        raise ValueError(f"'{path}' has no 'layers' cell array: it is not a MatConvNet "
                         f"model file. {advice}")
    layers = layers.ravel()
    names = vgg19_file_layer_names()
    if len(layers) < len(names):
        raise ValueError(f"'{path}' has {len(layers)} layers; MatConvNet's VGG-19 has 43 "
                         f"(at least the first {len(names)} are needed). {advice}")

    weights, in_channels = {}, 3
    for index, name in enumerate(names):
        if not name.startswith("conv"):
            continue
        try:
            layer = np.ravel(layers[index])[0]
            found = str(np.ravel(layer["name"])[0])
            kernel, bias = (np.asarray(a, dtype=np.float32) for a in np.ravel(layer["weights"]))
        except Exception:
            raise ValueError(f"'{path}': layer {index} is not a conv layer struct with 'name' "
                             f"and 'weights' (kernel, bias) fields. {advice}") from None
        if found != name:
            raise ValueError(f"'{path}': layer {index} is '{found}', expected '{name}': "
                             f"this is not MatConvNet's VGG-19. {advice}")
        if kernel.ndim != 4 or kernel.shape[:3] != (3, 3, in_channels):
            raise ValueError(f"'{path}': {name} has a kernel of shape {kernel.shape}, expected "
                             f"(3, 3, {in_channels}, C_out). {advice}")
        out_channels = kernel.shape[3]
        if bias.size != out_channels:
            raise ValueError(f"'{path}': {name} has {bias.size} biases for {out_channels} "
                             f"output channels. {advice}")
        weights[name] = kernel, bias.reshape(out_channels)
        in_channels = out_channels
    return weights


# ----- `python -m nst_utils download` and `verify`: the real weights, fetched and checked -----

# The files MatConvNet has published as imagenet-vgg-verydeep-19.mat: MD5 -> (name, bytes).
# The beta16 file's size is not recorded anywhere we could check, so it is not compared.
VGG19_RELEASES = {
    "106118b7cf60435e6d8e04f6a6dc3657": ("the current release", 534_904_783),
    "8ee3263992981a1d26e73b3ca028a123": ("the beta16 release", None),
}
VGG19_WIDTHS = (64, 128, 256, 512, 512)  # output channels of the convs in each block


def md5_of(path, chunk_size=1 << 20):
    """MD5 of the file at `path`, read in chunks; a progress bar appears if it takes over 1 s."""
    from tqdm import tqdm

    digest = hashlib.md5()
    with open(path, "rb") as file, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True,
                                        unit_divisor=1024, desc="checking MD5", delay=1,
                                        leave=False) as progress:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
            progress.update(len(chunk))
    return digest.hexdigest()


def check_vgg19_structure(path):
    """Raise ValueError unless `path` passes the loader's checks with VGG-19's exact widths."""
    for name, (kernel, _) in read_vgg19_weights(path).items():
        width = VGG19_WIDTHS[int(name[4]) - 1]
        if kernel.shape[3] != width:
            raise ValueError(f"'{path}': {name} has {kernel.shape[3]} output channels; "
                             f"VGG-19 has {width}.")


def verify_vgg19_file(path, releases=VGG19_RELEASES):
    """Say which of `releases` the file at `path` is, by its MD5.

    Returns (what it is, warning): the warning is None for a published release, and names the
    difference for a file with another MD5 whose layers are VGG-19's (a copy its owner converted).
    Raises FileNotFoundError, or ValueError saying why the file is not VGG-19.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError("there is no such file.")
    md5 = md5_of(path)
    if md5 in releases:
        return f"{releases[md5][0]} of MatConvNet's VGG-19, MD5 {md5}", None
    size = os.path.getsize(path)
    expected = ", ".join(f"{md5_} for {name}" + (f" ({bytes_:,} bytes)" if bytes_ else "")
                         for md5_, (name, bytes_) in releases.items())
    difference = f"its MD5 is {md5} ({size:,} bytes), not one of MatConvNet's: {expected}"
    try:
        check_vgg19_structure(path)
    except ValueError as problem:
        raise ValueError(f"{difference}. Nor does it hold VGG-19's layers: {problem}") from None
    return ("VGG-19's layers, but no published release",
            f"{difference}. Its layers have VGG-19's names and shapes, so it is used as it is; "
            f"if you did not convert it yourself, it may be damaged: download it again.")


# Fetching on first use: load_vgg_model and `python -m nst_utils run` download the weights when
# the file is missing, from VGG19_URL or a mirror, unless that is turned off.
VGG19_FILE_NAME = os.path.basename(CONFIG.VGG_MODEL)  # only a missing file of this name is fetched
MIRROR = "NST_VGG19_URL"  # where to download the weights from instead of VGG19_URL
NO_DOWNLOAD = "NST_NO_DOWNLOAD"  # =1: never download them, say how to get them instead


def vgg19_url():
    """Where the weights are downloaded from: $NST_VGG19_URL, else MatConvNet's VGG19_URL."""
    return os.environ.get(MIRROR) or VGG19_URL


def not_found(path):
    """The sentence for missing weights that are not downloaded: how to get them."""
    return (f"VGG-19 weights not found at '{path}'. Get them (about 510 MB) with "
            f"`python -m nst_utils download`, or download {vgg19_url()} by hand and put it "
            f"there; see pretrained-model/README.md.")


def not_downloaded(url, path, problem):
    """The sentence for a download that failed: why, and how to resume or place the file."""
    return (f"Could not get the VGG-19 weights from {url}: {problem}\nRun the same command (or "
            f"cell) again to resume, or download the file by hand and save it as {path} (see "
            f"pretrained-model/README.md).")


def fetch_vgg19(path):
    """Download the missing weights file `path` from vgg19_url(), saying first what, how big
    and where to, with download's progress bar and check. Raises FileNotFoundError (with what
    to do) if downloading is off ($NST_NO_DOWNLOAD=1), `path` is not named VGG19_FILE_NAME
    (a typing mistake is not filled with 510 MB), or the download fails."""
    if os.environ.get(NO_DOWNLOAD) == "1":
        raise FileNotFoundError(f"{not_found(path)} (Downloading is off: {NO_DOWNLOAD}=1.)")
    if os.path.basename(path) != VGG19_FILE_NAME:
        raise FileNotFoundError(not_found(path))
    url = vgg19_url()
    print(f"The VGG-19 weights are not at '{path}' yet: downloading them once (about 510 MB) "
          f"from {url} to there.", flush=True)
    try:
        said, warning = download(url, path)
    except (OSError, ValueError) as problem:
        raise FileNotFoundError(not_downloaded(url, path, problem)) from None
    print(said, flush=True)
    if warning:
        print(f"Warning: {warning}", file=sys.stderr)


def download(url, destination, releases=VGG19_RELEASES, chunk_size=1 << 20):
    """Download `url` to `destination` via `destination.part`, resuming what a previous run left;
    the file gets its final name only once verify_vgg19_file accepts it.

    Returns (a sentence saying what happened, verify_vgg19_file's warning or None); raises OSError
    or ValueError with what to do.
    """
    from tqdm import tqdm

    if os.path.exists(destination):
        try:
            found, warning = verify_vgg19_file(destination, releases)
        except ValueError as problem:
            raise ValueError(f"'{destination}' is already there but is not usable: {problem} "
                             f"It was left as it is: move or delete it, then run this command "
                             f"again.") from None
        return f"'{destination}' is already there and checked ({found}): nothing to do.", warning
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    part = destination + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: the part already holds the whole file
            raise OSError(f"the server answered {error.code} {error.reason}.") from None
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        reason = getattr(error, "reason", error)
        raise OSError(f"could not reach the server ({reason}); check your connection.") from None
    else:
        with response:
            if response.status != 206:  # the server ignored Range: start again
                have = 0
            total = have + int(response.headers.get("Content-Length") or 0) or None
            with open(part, "ab" if have else "wb") as file, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=os.path.basename(destination)) as progress:
                try:
                    while chunk := response.read(chunk_size):
                        file.write(chunk)
                        progress.update(len(chunk))
                except http.client.HTTPException as error:
                    raise OSError(f"the transfer failed ({error!r}).") from None
        if total and os.path.getsize(part) < total:
            raise OSError(f"the connection closed after {os.path.getsize(part) >> 20} of "
                          f"{total >> 20} MB.")
    try:
        found, warning = verify_vgg19_file(part, releases)
    except ValueError as problem:
        os.replace(part, destination + ".rejected")
        raise ValueError(f"the download is not VGG-19: {str(problem).rstrip('.')}. It was kept as "
                         f"'{destination}.rejected' for you to inspect.") from None
    os.replace(part, destination)
    return f"Downloaded and checked '{destination}' ({found}).", warning


# ----- `python -m nst_utils run`: the whole notebook, headless, with papermill -----

class _PrintAboveProgressBar(io.TextIOBase):
    """Where papermill sends what the notebook prints: to stdout, above the progress bar."""

    def write(self, text):
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout, end="")
        return len(text)


def _section_of(cells, index):
    """The heading of the notebook section that holds cell `index`."""
    for cell in reversed(cells[:index + 1]):
        if cell.cell_type == "markdown" and cell.source.startswith("#"):
            return cell.source.splitlines()[0].lstrip("# ")
    return "before the first heading"


def _literal(text):
    """`text` read as a Python literal (50, 0.5, None, 'a'), or `text` itself if it is not one."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(notebook, given):
    """The (NAME, VALUE) pairs of `-p NAME VALUE` as papermill parameters of `notebook`.

    VALUE stays text where the notebook's default is text, else is read as a literal (50, 0.5,
    None); iteration counts must be whole numbers from 1, conv_precision one of CONV_PRECISIONS.
    Raises ValueError for a name the notebook's parameters cell does not have, or a bad value.
    """
    import papermill

    known = papermill.inspect_notebook(notebook)
    parameters = {}
    for name, text in given:
        if name not in known:
            raise ValueError(f"-p {name}: the notebook has no such parameter; its parameters "
                             f"are {', '.join(known)}.")
        value = text if isinstance(_literal(known[name]["default"]), str) else _literal(text)
        if name.endswith("iterations") and not (type(value) is int and value >= 1):
            raise ValueError(f"-p {name} needs a whole number of at least 1, not '{text}'.")
        if name == "conv_precision" and value not in CONV_PRECISIONS:
            raise ValueError(f"-p conv_precision is {' or '.join(CONV_PRECISIONS)}, not '{text}'.")
        parameters[name] = value
    return parameters


def run_notebook(notebook, executed, given=(), weights=None):
    """Execute `notebook` (in the current folder) with papermill into `executed`, printing its
    output as it comes; `given` holds the (NAME, VALUE) pairs of `-p NAME VALUE`. The weights
    file `weights` (if given) is fetched first when missing (fetch_vgg19).

    Returns a sentence saying what happened. Raises ValueError if the run cannot start, and
    RuntimeError saying which cell failed and why.
    """
    import nbformat
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import DeadKernelError

    if not os.path.isfile(notebook):
        raise ValueError(f"there is no {notebook} in {os.getcwd()}: run this command in the "
                         f"project folder.")
    parameters = notebook_parameters(notebook, given)
    if weights and not os.path.isfile(weights):
        try:
            fetch_vgg19(weights)
        except FileNotFoundError as problem:
            raise ValueError(str(problem)) from None
    os.makedirs(os.path.dirname(executed) or ".", exist_ok=True)
    settings = "".join(f", {name} = {value!r}" for name, value in parameters.items())
    print(f"Running {notebook} with papermill{settings}; the executed copy goes to {executed}.",
          flush=True)
    try:
        papermill.execute_notebook(notebook, executed, parameters=parameters,
                                   stdout_file=_PrintAboveProgressBar(),
                                   progress_bar={"unit": "cell", "desc": notebook,
                                                 "disable": None})  # no bar in a log file
    except papermill.PapermillExecutionError as error:
        cells = nbformat.read(notebook, as_version=4).cells
        index = next((i for i, cell in enumerate(cells) if cell.source == error.source), None)
        where = ("the parameters papermill added" if index is None else
                 f"cell {index + 1} (section {_section_of(cells, index)})")
        raise RuntimeError(f"{where}: {error.ename}: {error.evalue}") from None
    except NoSuchKernel as error:
        raise RuntimeError(f"there is no Jupyter kernel '{error.name}': "
                           f"`pip install -r requirements.txt` installs it (ipykernel).") from None
    except DeadKernelError:
        raise RuntimeError("the notebook's Python process died (out of memory?).") from None
    except KeyboardInterrupt:
        raise RuntimeError("stopped with Ctrl-C.") from None
    return f"Ran {notebook}: the executed notebook is {executed}."


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nst_utils", description="Course tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("download", help="download and check the VGG-19 weights",
                              description="Download MatConvNet's VGG-19 (about 510 MB) into "
                                          "pretrained-model/, resuming an interrupted download, "
                                          "and check it as `verify` does.")
    get.add_argument("--url", default=vgg19_url(),
                     help=f"where to download from (a mirror; default ${MIRROR} or MatConvNet)")
    get.add_argument("--to", default=CONFIG.VGG_MODEL, help="where to save it")
    check = commands.add_parser("verify", help="say which VGG-19 release a weights file is",
                                description="Say which published release of MatConvNet's "
                                            "VGG-19 a file is (by its MD5), or why it is not "
                                            "one. Exit status 0 if it can be used, else 1.")
    check.add_argument("path", nargs="?", default=CONFIG.VGG_MODEL,
                       help=f"the file to check (default: {CONFIG.VGG_MODEL})")
    run = commands.add_parser("run", help="run the whole notebook headless",
                              description="Run every cell of the assignment notebook with "
                                          "papermill, showing its output as it comes; the "
                                          "executed notebook goes to the output folder.")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="set one of the notebook's parameters (its settings cell at the top), "
                          "as papermill's -p does: num_iterations (section 4, 200), "
                          "my_content_path, my_style_path, my_iterations (section 5), "
                          "conv_precision (VGG-19's convs in both: float32, or bfloat16 where "
                          "the processor has it)")
    run.add_argument("--url", help=f"where to download the VGG-19 weights from if they are "
                                   f"missing (a mirror; default ${MIRROR} or MatConvNet)")
    run.add_argument("--no-download", action="store_true",
                     help=f"never download the weights (as {NO_DOWNLOAD}=1): stop if missing")
    args = parser.parse_args(argv)
    if args.command == "run":
        # in the environment, so that the notebook's kernel fetches (or not) as this run does
        if args.url:
            os.environ[MIRROR] = args.url
        if args.no_download:
            os.environ[NO_DOWNLOAD] = "1"
        executed = os.path.join(CONFIG.OUTPUT_DIR, "nst_assignment.ipynb")
        try:
            print(run_notebook("nst_assignment.ipynb", executed, args.parameter,
                               weights=CONFIG.VGG_MODEL))
        except ValueError as problem:
            print(f"The run did not start: {problem}", file=sys.stderr)
            return 1
        except RuntimeError as problem:
            print(f"The run failed: {problem}\nThe notebook as far as it ran, with the full "
                  f"traceback: {executed}", file=sys.stderr)
            return 1
        return 0
    try:
        if args.command == "verify":
            found, warning = verify_vgg19_file(args.path)
            print(f"'{args.path}' checked: {found}.")
        else:
            said, warning = download(args.url, args.to)
            print(said)
    except (OSError, ValueError) as problem:  # FileNotFoundError is an OSError
        if args.command == "verify":
            print(f"'{args.path}' cannot be used as the VGG-19 weights: {problem}\nGet them "
                  f"with `python -m nst_utils download` (see pretrained-model/README.md).",
                  file=sys.stderr)
        else:
            print(not_downloaded(args.url, args.to, problem), file=sys.stderr)
        return 1
    if warning:
        print(f"Warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
