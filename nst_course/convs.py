"""The convs of load_vgg_model: VGG-19's layers built from the file's weights, their precision
(float32, or bfloat16 where the machine computes it natively) and, for the wide float32 convs
on a CPU, Winograd's algorithm, which is faster there (benchmarks/RESULTS.md).
"""
import os

import numpy as np

from nst_course.precisions import BFLOAT16_CPU_FLAGS, CONV_PRECISIONS, FORCE_BFLOAT16
from nst_course.tf1 import nvidia_driver_present, tf
from nst_course.vgg19_file import VGG19_BLOCKS

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


def vgg19_layers(graph, weights, precision="float32", winograd=False):
    """Add VGG-19's conv and pool layers, built from `weights` ({convN_i: (kernel, bias)}) on
    graph['input'], to the dict `graph` and return it; `precision` and `winograd` as conv_plan
    gives them. convN_i is conv + bias + ReLU (Winograd for the convs with at least
    WINOGRAD_MIN_CHANNELS outputs, where allowed); avgpoolN is 2x2 average pooling.

    In bfloat16 the input is cast once, and the convs, biases, ReLUs, pools and their gradients
    run in bfloat16 (each op named as its layer, plus "_bfloat16"). What the dict holds for each
    layer is then a float32 copy (a Cast named as the layer): a graph runs only the ops a fetch
    needs, so a copy costs nothing unless the costs or a sess.run read that layer, and the
    gradient of what they read flows back through it (and the input's cast) to the float32
    input."""
    bfloat16 = precision == "bfloat16"
    dtype, suffix = (tf.bfloat16, "_bfloat16") if bfloat16 else (tf.float32, "")
    previous = graph["input"]
    if bfloat16:
        previous = tf.cast(previous, tf.bfloat16, name="input_bfloat16")

    def layer(name, tensor):
        """`tensor` as the next layer's input; in the dict, as float32."""
        graph[name] = tf.cast(tensor, tf.float32, name=name) if bfloat16 else tensor
        return tensor

    for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            name = f"conv{block}_{i}"
            kernel, bias = weights[name]
            conv = conv3x3(previous, kernel, precision=precision,
                           winograd=winograd and kernel.shape[3] >= WINOGRAD_MIN_CHANNELS)
            previous = layer(name, tf.nn.relu(conv + tf.constant(bias, dtype=dtype),
                                              name=name + suffix))
        name = f"avgpool{block}"
        previous = layer(name, tf.nn.avg_pool(previous, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1],
                                              padding="SAME", name=name + suffix))
    return graph


# ----- the convs' precision: float32, or bfloat16 where the machine computes it natively -----

# (nst_course/precisions.py: which precisions there are, and when bfloat16 pays)
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
    if not nvidia_driver_present() or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return []
    return tf.config.list_physical_devices("GPU")


def conv_plan(precision):
    """(precision, Winograd allowed) for the convs of a model built now: `precision` (load_vgg_model
    passes CONFIG.CONV_PRECISION), but float32, said once, where bfloat16 would be emulated;
    Winograd for float32 on a CPU (it measured faster there; a GPU's library picks its own
    algorithms for the direct conv)."""
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
