"""Write MatConvNet "simplenn" VGG-19 .mat files with random weights, for tests and benchmarks.

The layout is MatConvNet's for imagenet-vgg-verydeep-19.mat: a (1, 43) `layers` cell of structs
(name, type, weights, ...) plus `meta`; layout="beta16" mimics the older release (other field
order, normalization and classes at the top level). width_scale shrinks every channel count
(1.0 is real VGG-19 size).
"""
import numpy as np
import scipy.io

from nst_course.vgg19_file import VGG19_MEANS, VGG19_WIDTHS, vgg19_file_layer_names


def scaled_widths(width_scale):
    return [max(1, round(w * width_scale)) for w in VGG19_WIDTHS]


def _struct(**fields):
    """A 1x1 MATLAB struct with fields in the given order."""
    record = np.empty((1, 1), dtype=[(name, object) for name in fields])
    for name, value in fields.items():
        record[0, 0][name] = value
    return record


def _cell(*items):
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _layer(layout, name, type_, weights=None):
    weights = np.zeros((0, 0)) if weights is None else weights
    extra = dict(size=np.zeros((1, 4)), pad=np.zeros((1, 4)), stride=np.ones((1, 2)))
    if layout == "beta16":
        return _struct(type=type_, weights=weights, name=name, precious=0, **extra)
    return _struct(name=name, type=type_, weights=weights, **extra)


def _conv_weights(rng, kernel_shape, bias_layout, dtype):
    fan_in = np.prod(kernel_shape[:3])
    kernel = rng.normal(0, np.sqrt(2 / fan_in), kernel_shape).astype(dtype)
    bias = rng.normal(0, 0.01, kernel_shape[3]).astype(dtype)
    bias = bias.reshape(-1, 1) if bias_layout == "column" else bias.reshape(1, -1)
    return _cell(kernel, bias)


def vgg19_layers(width_scale=1 / 32, with_fc=True, bias_layout="column", layout="current",
                 seed=0, dtype=np.float32):
    """The list of 43 (or 37 without fc) layer structs."""
    rng = np.random.default_rng(seed)
    widths = scaled_widths(width_scale)
    layers, in_channels = [], 3
    for name in vgg19_file_layer_names():
        if name.startswith("conv"):
            out_channels = widths[int(name[4]) - 1]
            weights = _conv_weights(rng, (3, 3, in_channels, out_channels), bias_layout, dtype)
            layers.append(_layer(layout, name, "conv", weights))
            in_channels = out_channels
        else:
            layers.append(_layer(layout, name, name.rstrip("0123456789_")))
    if with_fc:
        fc_widths = [max(1, round(4096 * width_scale))] * 2 + [1000]
        for i, (size, out) in enumerate(zip((7, 1, 1), fc_widths), start=6):
            kernel_shape = (size, size, in_channels, out)
            layers.append(_layer(layout, f"fc{i}", "conv",
                                 _conv_weights(rng, kernel_shape, bias_layout, dtype)))
            if i < 8:
                layers.append(_layer(layout, f"relu{i}", "relu"))
            in_channels = out
        layers.append(_layer(layout, "prob", "softmax"))
    return layers


def write_vgg19_mat(path, width_scale=1 / 32, with_fc=True, with_meta=True,
                    bias_layout="column", layout="current", seed=0, layers=None):
    """Write a VGG-19 .mat fixture to `path` and return the path."""
    if layers is None:
        layers = vgg19_layers(width_scale, with_fc, bias_layout, layout, seed)
    contents = {"layers": _cell(*layers)}
    normalization = _struct(averageImage=np.array(VGG19_MEANS).reshape(1, 1, 3),
                            imageSize=np.array([[224, 224, 3, 1]]))
    classes = _struct(name=_cell("n01440764"), description=_cell("tench"))
    if with_meta and layout == "beta16":
        contents.update(normalization=normalization, classes=classes)
    elif with_meta:
        contents["meta"] = _struct(normalization=normalization, classes=classes)
    scipy.io.savemat(str(path), contents)
    return path


def conv_weights(layers):
    """{conv name: (kernel, bias as a vector)} read back from the structs, for NumPy references."""
    result = {}
    for name, layer in zip(vgg19_file_layer_names(), layers):
        if name.startswith("conv"):
            kernel, bias = layer[0, 0]["weights"][0]
            result[name] = kernel, bias.ravel()
    return result
