"""Helpers for the Neural Style Transfer assignment: VGG-19 as TF1 tensors, image I/O, figures.

`from nst_utils import *` gives you the names in `__all__`: `tf` (TensorFlow's 1.x API, graph
mode), `np`, `imageio`, `CONFIG`, `load_vgg_model`, the image helpers, the test cells' verdict
and the figures of a run. The course's own tools (TensorFlow's quiet import with 1.x's seed
rule, the VGG-19 file's reader, the convs, the weights' download, the headless run) are in the
nst_course package beside this file.
"""
import contextlib
import io
import os
import re
import sys

import imageio.v2 as imageio
import numpy as np

from nst_course.vgg19_file import VGG19_MEANS

__all__ = [
    "tf", "np", "imageio", "CONFIG", "load_vgg_model", "generate_noise_image",
    "reshape_and_normalize_image", "load_image", "deprocess_image", "save_image", "check_value",
    "record_costs", "saving_to", "plot_summary", "plot_costs", "plot_iterations",
]


class CONFIG:
    IMAGE_WIDTH = 400
    IMAGE_HEIGHT = 300
    COLOR_CHANNELS = 3
    NOISE_RATIO = 0.6
    MEANS = np.array(VGG19_MEANS).reshape((1, 1, 1, 3))  # what VGG-19's input lacks
    VGG_MODEL = "pretrained-model/imagenet-vgg-verydeep-19.mat"
    STYLE_IMAGE = "images/swirling_brushstrokes_400x300.jpg"
    CONTENT_IMAGE = "images/chelsea_the_cat_400x300.jpg"
    OUTPUT_DIR = "output/"
    CONV_PRECISION = "float32"  # VGG-19's convs, read by load_vgg_model: or "bfloat16" (faster on
    # CPUs with AMX or AVX512-BF16; elsewhere float32 runs instead, see nst_course.convs)


if __name__ == "__main__":  # `python -m nst_utils run | download | verify`, before TensorFlow
    from nst_course.cli import main

    sys.exit(main(sys.argv[1:], CONFIG))

# TensorFlow's 1.x API in graph mode, imported quietly, with TensorFlow 1.x's seed rule
from nst_course.tf1 import tf  # noqa: E402
from nst_course.convs import conv_plan, vgg19_layers  # noqa: E402
from nst_course.vgg19_file import read_vgg19_weights  # noqa: E402
from nst_course.weights import fetch_vgg19  # noqa: E402


def load_vgg_model(path):
    """Build VGG-19's conv layers from the .mat at `path` as a dict of tf.compat.v1 tensors.

    'input' is a (1, IMAGE_HEIGHT, IMAGE_WIDTH, 3) float32 Variable; convN_i are conv + bias +
    ReLU with the file's weights (as constants: gradients flow to the input only; the wide
    float32 convs on a CPU by Winograd's algorithm, see nst_course.convs); avgpoolN replace
    VGG's max pooling, as Gatys et al. suggest. The fully connected layers are not used. Every
    layer in the dict is float32; with CONFIG.CONV_PRECISION "bfloat16" the network between the
    input and them runs in bfloat16. A missing weights file is downloaded first (see
    pretrained-model/README.md).
    """
    if not os.path.isfile(path):
        fetch_vgg19(path)  # downloads it where that is wanted, else raises FileNotFoundError
    weights = read_vgg19_weights(path)
    precision, winograd = conv_plan(CONFIG.CONV_PRECISION)
    shape = (1, CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH, CONFIG.COLOR_CHANNELS)
    graph = {"input": tf.Variable(np.zeros(shape), dtype="float32")}
    return vgg19_layers(graph, weights, precision, winograd)


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
