"""model_nn's hidden inputs and its reference run, made by a trusted process of our own (a child of
the sandbox's zygote that runs no submission code; grading/zygote.py), never by a worker and
never in the grader's process, which does not import TensorFlow.

From a seed: a random VGG-19 fixture, random content and style images and a random start; the
notebook's section 4 built on them with the assignment's cost formulas and Adam; the graph
exported as a MetaGraphDef. A model_nn worker imports that graph, so it gets the costs as
TensorFlow operations, never as Python formulas it could call. Then the reference itself: 200
steps, the costs and pictures every 20, and the pictures one step before and after each.
"""
import base64
import os
import tempfile

import numpy as np

from grading.references import ALPHA, BETA, CONTENT_LAYER, ITERATIONS, REPORTED, STYLE_LAYERS
from grading.wire import encode_array
from nst_utils import CONFIG, deprocess_image, load_vgg_model, save_image, tf

SIZE = (40, 56)  # height, width of model_nn's hidden images (small: fast to grade; VGG-19 needs 32)


def section4_costs(sess, model, content_image, style_image):
    """The notebook's section 4 wiring with the assignment's formulas, for (1, H, W, 3) inputs
    already normalised: (J, J_content, J_style) with ALPHA and BETA."""
    def gram(a):
        unrolled = tf.transpose(tf.reshape(a, [-1, a.shape[-1]]))
        return tf.matmul(unrolled, unrolled, transpose_b=True)

    sess.run(model["input"].assign(content_image))
    a_C, a_G = sess.run(model[CONTENT_LAYER]), model[CONTENT_LAYER]
    J_content = tf.reduce_sum(tf.square(a_C - a_G)) / (4 * np.prod(a_C.shape[1:]))
    sess.run(model["input"].assign(style_image))
    J_style = 0
    for layer, coeff in STYLE_LAYERS:
        a_S, a_G = sess.run(model[layer]), model[layer]
        _, n_H, n_W, n_C = a_S.shape
        J_style += coeff * tf.reduce_sum(tf.square(gram(a_S) - gram(a_G))) / (
            4 * n_C ** 2 * (n_H * n_W) ** 2)
    return ALPHA * J_content + BETA * J_style, J_content, J_style


def hidden_images(rng):
    """Content, style (uniform random pictures, normalised) and the start: noise blended with
    the content by CONFIG.NOISE_RATIO, as generate_noise_image does, but drawn from `rng`."""
    content, style = (rng.uniform(0, 255, (1, *SIZE, 3)) - CONFIG.MEANS for _ in range(2))
    noise = rng.uniform(-20, 20, content.shape)
    start = (noise * CONFIG.NOISE_RATIO + content * (1 - CONFIG.NOISE_RATIO)).astype(np.float32)
    return content, style, start


def run(task, send):
    """For task {"seed": N}: send {"graph", "names", "input_image"} (what a model_nn worker
    needs), then {"reference": {...}} (what its results are checked against)."""
    from grading.mat_fixture import write_vgg19_mat

    rng = np.random.default_rng([task["seed"], 4])
    settings = CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH, CONFIG.CONV_PRECISION
    CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH = SIZE
    CONFIG.CONV_PRECISION = "float32"  # graded runs are float32, whatever a notebook asks for
    with tempfile.TemporaryDirectory() as folder, tf.Graph().as_default(), \
            tf.Session() as sess:
        weights = write_vgg19_mat(os.path.join(folder, "hidden-vgg19.mat"),
                                  seed=int(rng.integers(2 ** 31)))
        content, style, start = hidden_images(rng)
        model = load_vgg_model(str(weights))
        J, J_content, J_style = section4_costs(sess, model, content, style)
        optimizer = tf.train.AdamOptimizer(2.0)
        train_step = optimizer.minimize(J, name="train_step")
        names = {"model": {layer: tensor.op.name if layer == "input" else tensor.name
                           for layer, tensor in model.items()},
                 "J": J.name, "J_content": J_content.name, "J_style": J_style.name,
                 "train_step": train_step.name,
                 "beta1_power": optimizer._get_beta_accumulators()[0].op.name}
        graph = tf.train.export_meta_graph().SerializeToString()
        send({"graph": base64.b64encode(graph).decode(), "names": names,
              "input_image": encode_array(start)})

        sess.run(tf.global_variables_initializer())
        sess.run(model["input"].assign(start))
        # images[k]: after k steps, kept for the steps the checks look at
        wanted = {k for i in REPORTED for k in (i, i + 1, i + 2)} | {3, ITERATIONS}
        images, costs = {0: start}, []
        for i in range(ITERATIONS):
            sess.run(train_step)
            if i + 1 in wanted:
                images[i + 1] = sess.run(model["input"])
            if i in REPORTED:
                costs.append(sess.run([J, J_content, J_style]))
        after_3, image = images[3], images[ITERATIONS]
        save_image(os.path.join(folder, "final.jpg"), image)  # as model_nn saves it: JPEG's loss
        from PIL import Image
        with Image.open(os.path.join(folder, "final.jpg")) as saved:
            final_jpeg = np.asarray(saved.convert("RGB"))
    CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH, CONFIG.CONV_PRECISION = settings
    # i.png is saved after step i + 1; its neighbours are the pictures one step before and after
    steps = np.array([[deprocess_image(images[k]) for k in (i, i + 1, i + 2)] for i in REPORTED])
    send({"reference": {"costs": encode_array(costs), "pictures": encode_array(steps),
                        "final_jpeg": encode_array(final_jpeg), "after_3": encode_array(after_3),
                        "final": encode_array(image)}})
