"""MatConvNet's VGG-19 file (imagenet-vgg-verydeep-19.mat): its layout and its reader.

NumPy and SciPy only (no TensorFlow), so that the weights' check and the tests' fixture files
(grading/mat_fixture.py) need no TensorFlow.
"""

import numpy as np
import scipy.io

VGG19_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
VGG19_BLOCKS = (2, 2, 4, 4, 4)  # conv layers in each of VGG-19's five blocks
VGG19_WIDTHS = (64, 128, 256, 512, 512)  # output channels of the convs in each block
VGG19_MEANS = (123.68, 116.779, 103.939)  # ImageNet's mean R, G, B, which VGG-19's input lacks


def vgg19_file_layer_names():
    """Names of layers 0-36 of MatConvNet's VGG-19 file: convN_i, reluN_i, ..., poolN per block."""
    names = []
    for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def read_vgg19_weights(path):
    """Return {conv layer name: (kernel, bias)} from the MatConvNet VGG-19 .mat file at `path`
    (there already: load_vgg_model fetches a missing one first), checked.

    Fields are read by name, so both the current file and the older "beta16" release work.
    Raises ValueError saying what is wrong.
    """
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


def check_vgg19_structure(path):
    """Raise ValueError unless `path` passes the loader's checks with VGG-19's exact widths."""
    for name, (kernel, _) in read_vgg19_weights(path).items():
        width = VGG19_WIDTHS[int(name[4]) - 1]
        if kernel.shape[3] != width:
            raise ValueError(f"'{path}': {name} has {kernel.shape[3]} output channels; "
                             f"VGG-19 has {width}.")
