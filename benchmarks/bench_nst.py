"""Benchmark the notebook's style-transfer loop against a TF2 peer and the machine's matmul peak.

    python benchmarks/bench_nst.py [--quick] [--layers] [--json results.json] [--iterations 12]

Writes a VGG-19 of random weights at full width in MatConvNet's layout (timing does not depend
on the values), builds section 4's graph with the graded functions taken from the notebook, and
times one model_nn iteration (sess.run(train_step), then reading model['input']). A second
process runs the same optimisation written the TF2 way (tf.function + GradientTape + Keras Adam)
on the same weights and images, and two more time a 4096x4096 float32 matmul in TF and in
NumPy (the machine's peak). All take turns, one iteration each, so all see the same load from
anything else on the machine: the median seconds after two warm-up rounds, and each loop's
peak resident memory.

Per layer (each distinct conv shape, conv1_2 to conv5_1), it also times the forward conv plus
its input gradient the direct way and by Winograd (nst_utils.conv3x3), taking turns likewise;
--layers times only these.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STYLE_LAYERS = [("conv1_1", 0.2), ("conv2_1", 0.2), ("conv3_1", 0.2), ("conv4_1", 0.2),
                ("conv5_1", 0.2)]
CONTENT_LAYER = "conv4_2"
WARM_UP = 2


def peak_rss_mb():
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited on fork)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def iteration_gflop(height, width, widths):
    """FLOPs of one iteration: the convs up to conv5_1 forward, and as much again backward (the
    gradient with respect to each conv's input; the weights are constants)."""
    from nst_utils import VGG19_BLOCKS

    forward, channels = 0, 3
    for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            forward += 2 * height * width * 9 * channels * widths[block - 1]
            channels = widths[block - 1]
            if (block, i) == (5, 1):
                return 2 * forward / 1e9
        height, width = -(-height // 2), -(-width // 2)


def images(height, width):
    """The course's content and style images at height x width, normalised; sets CONFIG's size."""
    from nst_utils import CONFIG, load_image, reshape_and_normalize_image

    CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH = height, width
    return [reshape_and_normalize_image(load_image(str(ROOT / path), width, height))
            for path in (CONFIG.CONTENT_IMAGE, CONFIG.STYLE_IMAGE)]


MATMUL_SIZE = 4096


def matmul(library):
    """A function multiplying two MATMUL_SIZE square float32 matrices in `library` (tensorflow
    or numpy, whose BLAS on some CPUs reaches twice TF's own matmul)."""
    if library == "numpy":
        a, b = (np.random.default_rng(i).random((MATMUL_SIZE,) * 2, dtype=np.float32)
                for i in (1, 2))
        return lambda: a @ b
    from nst_utils import tf

    a, b = (tf.Variable(tf.random_normal([MATMUL_SIZE] * 2)) for _ in range(2))
    product = tf.reduce_sum(tf.matmul(a, b))
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return lambda: sess.run(product)


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def tf1_loop(weights_path, height, width, notebook):
    """Section 4 of the notebook (graded functions from `notebook`): a function running one
    model_nn iteration."""
    from grading.notebook import trusted_graded_functions
    from nst_utils import generate_noise_image, load_vgg_model, tf

    graded = trusted_graded_functions(notebook)
    content_cost, layer_style_cost, total_cost = (
        graded[name] for name in ("compute_content_cost", "compute_layer_style_cost",
                                  "total_cost"))
    content_image, style_image = images(height, width)
    tf.reset_default_graph()
    sess = tf.InteractiveSession()
    model = load_vgg_model(str(weights_path))
    sess.run(model["input"].assign(content_image))
    J_content = content_cost(sess.run(model[CONTENT_LAYER]), model[CONTENT_LAYER])
    sess.run(model["input"].assign(style_image))
    J_style = sum(coeff * layer_style_cost(sess.run(model[layer]), model[layer])
                  for layer, coeff in STYLE_LAYERS)
    J = total_cost(J_content, J_style, alpha=10, beta=40)
    train_step = tf.train.AdamOptimizer(2.0).minimize(J)
    sess.run(tf.global_variables_initializer())
    np.random.seed(1)
    sess.run(model["input"].assign(generate_noise_image(content_image)))

    def iteration():
        sess.run(train_step)
        sess.run(model["input"])
    return iteration


def tf2_peer(weights_path, height, width):
    """The same optimisation written as a TF2 tutorial would: eager, tf.function, GradientTape,
    Keras Adam; returns a function running one iteration. Runs in its own process (nst_utils
    switches TF2 behaviour off)."""
    import tensorflow as tf

    from nst_utils import VGG19_BLOCKS, generate_noise_image, read_vgg19_weights

    tf.compat.v1.enable_v2_behavior()
    weights = {name: (tf.constant(k), tf.constant(b))
               for name, (k, b) in read_vgg19_weights(str(weights_path)).items()}
    layers = [CONTENT_LAYER] + [layer for layer, _ in STYLE_LAYERS]

    def features(image):
        out, x = {}, image
        for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
            for i in range(1, n_convs + 1):
                kernel, bias = weights[f"conv{block}_{i}"]
                x = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)
                out[f"conv{block}_{i}"] = x
                if f"conv{block}_{i}" == "conv5_1":
                    return [out[name] for name in layers]
            x = tf.nn.avg_pool2d(x, 2, 2, "SAME")

    def gram(a):
        a = tf.reshape(a, [-1, a.shape[-1]])
        return tf.matmul(a, a, transpose_a=True)

    content_image, style_image = (tf.constant(i, tf.float32) for i in images(height, width))
    a_C = features(content_image)[0]
    style_targets = [(gram(a), a.shape) for a in features(style_image)[1:]]
    np.random.seed(1)
    image = tf.Variable(generate_noise_image(content_image.numpy()).astype(np.float32))
    optimizer = tf.keras.optimizers.Adam(learning_rate=2.0)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            activations = features(image)
            J_content = tf.reduce_sum(tf.square(a_C - activations[0])) / (4 * np.prod(a_C.shape))
            J_style = 0.0
            for (GS, shape), a_G, (_, coeff) in zip(style_targets, activations[1:], STYLE_LAYERS):
                n_H, n_W, n_C = shape[1:]
                J_style += coeff * tf.reduce_sum(tf.square(GS - gram(a_G))) / (
                    4 * n_C ** 2 * (n_H * n_W) ** 2)
            J = 10 * J_content + 40 * J_style
        optimizer.apply_gradients([(tape.gradient(J, image), image)])

    return lambda: (step(), image.numpy())


def serve(iteration):
    """A helper process's loop: one timed call of `iteration` per 'step' line on stdin, its
    seconds on stdout; on 'exit', the process's peak RSS."""
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        print(timed(iteration), flush=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)


class Helper:
    """This script run with `arguments` in its own process (see serve), stepped one call at a
    time, so that it takes turns with the TF1 loop and its memory is counted apart."""

    def __init__(self, *arguments):
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, __file__, *map(str, arguments)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.read()  # "ready"

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
            sys.exit(f"a helper process failed:\n{self.log.read()[-2000:]}")
        return line

    def step(self):
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        return float(self.read())

    def close(self):
        """Stop the process; return its peak RSS in MB."""
        self.process.stdin.write("exit\n")
        self.process.stdin.flush()
        peak = json.loads(self.read())["peak_rss_mb"]
        self.process.wait()
        return peak


def take_turns(timers, iterations):
    """Call the timers (each runs something once and returns its seconds) in turn, WARM_UP +
    iterations rounds, every other round in reverse order (so none always follows the same one,
    whose threads may still be spinning); the median of each after the warm-up rounds."""
    times = []
    for round_ in range(WARM_UP + iterations):
        order = range(len(timers)) if round_ % 2 == 0 else reversed(range(len(timers)))
        seconds = {i: timers[i]() for i in order}
        times.append([seconds[i] for i in range(len(timers))])
    return [statistics.median(column) for column in zip(*times[WARM_UP:])]


def layer_shapes(height, width, widths):
    """{name: (height, width, C_in, C_out, by Winograd in load_vgg_model)} of the first conv of
    each distinct shape from conv1_2 to conv5_1."""
    from nst_utils import VGG19_BLOCKS, WINOGRAD_MIN_CHANNELS

    shapes, seen, channels = {}, set(), 3
    for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            shape = (height, width, channels, widths[block - 1])
            channels = widths[block - 1]
            if shape not in seen and (block, i) != (1, 1):
                seen.add(shape)
                shapes[f"conv{block}_{i}"] = shape + (shape[3] >= WINOGRAD_MIN_CHANNELS,)
            if (block, i) == (5, 1):
                return shapes
        height, width = -(-height // 2), -(-width // 2)


def layer_times(height, width, widths, iterations):
    """Per distinct conv shape: forward + input gradient, direct and by Winograd, in turns."""
    from nst_utils import conv3x3, tf

    rows = []
    for name, (h, w, c_in, c_out, used) in layer_shapes(height, width, widths).items():
        rng = np.random.default_rng(0)
        kernel = rng.normal(0, np.sqrt(2 / (9 * c_in)), (3, 3, c_in, c_out)).astype(np.float32)
        with tf.Graph().as_default(), tf.Session() as sess:
            x = tf.Variable(rng.normal(size=(1, h, w, c_in)).astype(np.float32))
            # a variable, not a constant: Grappler would compute a gradient of constants once
            mix = tf.Variable(rng.normal(size=(1, h, w, c_out)).astype(np.float32))
            runs, values = [], []
            for winograd in (False, True):
                y = conv3x3(x, kernel, winograd)
                grad = tf.gradients(tf.reduce_sum(y * mix), x)[0]
                # fetch sums: a tf.group of the two would let Grappler skip their work
                step = tf.reduce_sum(y) + tf.reduce_sum(grad)
                runs.append(lambda step=step: timed(lambda: sess.run(step)))
                values.append((y, grad))
            sess.run(tf.global_variables_initializer())
            (y0, g0), (y1, g1) = sess.run(values)
            direct, fast = take_turns(runs, iterations)
        gflop = 2 * 2 * h * w * 9 * c_in * c_out / 1e9
        rows.append({"layer": name, "shape": [1, h, w, c_in, c_out], "winograd_used": used,
                     "direct_ms": 1e3 * direct, "winograd_ms": 1e3 * fast,
                     "direct_gflops": gflop / direct, "winograd_effective_gflops": gflop / fast,
                     "max_rel_error_activation": float(np.abs(y1 - y0).max() / np.abs(y0).max()),
                     "max_rel_error_gradient": float(np.abs(g1 - g0).max() / np.abs(g0).max())})
        row = rows[-1]
        print(f"{name} {h}x{w} {c_in}->{c_out}: forward+gradient direct {row['direct_ms']:.1f} "
              f"ms, Winograd {row['winograd_ms']:.1f} ms ({fast / direct:.2f}x"
              f"{', used' if used else ', not used'}); max relative error "
              f"{row['max_rel_error_activation']:.1e} / {row['max_rel_error_gradient']:.1e}",
              flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 150x200 images, a quarter of VGG-19's widths")
    parser.add_argument("--iterations", type=int, default=12, help="timed iterations (>= 10)")
    parser.add_argument("--notebook", default=str(ROOT / "nst_assignment.ipynb"))
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--layers", action="store_true",
                        help="only the per-layer times, direct and by Winograd")
    parser.add_argument("--peer", nargs=3, metavar=("WEIGHTS", "HEIGHT", "WIDTH"),
                        help=argparse.SUPPRESS)  # internal: serve the TF2 peer's iterations
    parser.add_argument("--matmul", choices=["tensorflow", "numpy"],
                        help=argparse.SUPPRESS)  # internal: serve matmuls
    args = parser.parse_args(argv)
    if args.iterations < (1 if args.quick else 10):
        parser.error("--iterations: at least 10 timed iterations (at least 1 with --quick)")

    if args.peer:
        return serve(tf2_peer(args.peer[0], int(args.peer[1]), int(args.peer[2])))
    if args.matmul:
        return serve(matmul(args.matmul))

    from grading.mat_fixture import scaled_widths

    scale, (height, width) = (0.25, (150, 200)) if args.quick else (1.0, (300, 400))
    widths = scaled_widths(scale)
    results = {"size": f"{width}x{height}", "vgg_width_scale": scale,
               "timed_iterations": args.iterations}
    if not args.layers:
        results.update(whole_iteration(height, width, scale, args.iterations, args.notebook))
    results["layers"] = layer_times(height, width, widths, args.iterations)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def whole_iteration(height, width, scale, iterations, notebook):
    """The TF1 loop, the TF2 peer and the matmul peak (TF's and NumPy's), in turns: effective
    GFLOP/s against the peak; peak RSS."""
    from grading.mat_fixture import scaled_widths, write_vgg19_mat

    with tempfile.TemporaryDirectory() as scratch:
        weights = write_vgg19_mat(Path(scratch) / "vgg19.mat", width_scale=scale, with_fc=False)
        iteration = tf1_loop(weights, height, width, notebook)
        helpers = [Helper("--peer", weights, height, width), Helper("--matmul", "tensorflow"),
                   Helper("--matmul", "numpy")]
        tf1_seconds, peer_seconds, *matmul_seconds = take_turns(
            [lambda: timed(iteration)] + [helper.step for helper in helpers], iterations)
        tf1_rss, peer_rss = peak_rss_mb(), helpers[0].close()
        for helper in helpers[1:]:
            helper.close()
    peaks = {library: 2 * MATMUL_SIZE ** 3 / seconds / 1e9
             for library, seconds in zip(["tensorflow", "numpy"], matmul_seconds)}
    peak_gflops = max(peaks.values())
    gflop = iteration_gflop(height, width, scaled_widths(scale))
    results = {
        "tf1_seconds_per_iteration": tf1_seconds, "tf2_peer_seconds_per_iteration": peer_seconds,
        "ratio_tf1_to_peer": tf1_seconds / peer_seconds, "gflop_per_iteration": gflop,
        "tf1_effective_gflops": gflop / tf1_seconds, "matmul_peak_gflops": peak_gflops,
        "matmul_gflops_tensorflow": peaks["tensorflow"], "matmul_gflops_numpy": peaks["numpy"],
        "fraction_of_peak": gflop / tf1_seconds / peak_gflops,
        "tf1_peak_rss_mb": tf1_rss, "peer_peak_rss_mb": peer_rss,
    }
    print(f"{width}x{height}: TF1 loop {tf1_seconds:.3f} s/iteration, TF2 peer "
          f"{peer_seconds:.3f} s (ratio {results['ratio_tf1_to_peer']:.2f}, in turns); "
          f"{gflop:.0f} GFLOP/iteration (direct convs) = {results['tf1_effective_gflops']:.0f} "
          f"effective GFLOP/s, {100 * results['fraction_of_peak']:.0f}% of the "
          f"{peak_gflops:.0f} GFLOP/s matmul peak; peak RSS {tf1_rss:.0f} MB (peer "
          f"{peer_rss:.0f} MB)", flush=True)
    return results


if __name__ == "__main__":
    main()
