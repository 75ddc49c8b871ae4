"""Benchmark the notebook's style-transfer loop against a TF2 peer and the machine's matmul peak.

    python benchmarks/bench_nst.py [--quick] [--layers | --accuracy | --run-time | --profile]
                                   [--json results.json] [--iterations 12]
                                   [--accuracy-iterations 200] [--out DIR]
                                   [--profile-iterations 2]

Writes a VGG-19 of random weights at full width in MatConvNet's layout (timing does not depend
on the values), builds section 4's graph with the graded functions taken from the notebook, and
times one model_nn iteration (sess.run(train_step), then reading model['input']), with VGG's
convs in float32 and, in a second process, in bfloat16 (CONFIG.CONV_PRECISION; forced where the
processor has no bfloat16 units, and then reported as emulated). Two more processes run the
same optimisation written the TF2 way (tf.function + GradientTape + Keras Adam) on the same
weights and images: in float32, and with Keras layers under the mixed_bfloat16 policy. Three
more time a 4096x4096 matmul: float32 in TF and in NumPy, bfloat16 in TF (the peaks). All take
turns, one iteration each, so all see the same load from anything else on the machine: the
median seconds of each loop after two warm-up rounds (the best for the peaks), and each loop's
peak resident memory.

Per layer (each distinct conv shape, conv1_2 to conv5_1), it also times the forward conv plus
its input gradient the direct way in float32 and in bfloat16, and by Winograd
(nst_course.convs.conv3x3), taking turns likewise; --layers times only these.

The accuracy run optimises section 4 for --accuracy-iterations in float32 and then in bfloat16
from the same start and compares every printed cost and the final pictures (PSNR; a figure
side by side in --out), and, for scale, a float32 run from another start with the first;
--accuracy runs only this.

--profile runs only this: each loop (ours in float32 and in bfloat16, the TF2 peer in float32
and under mixed_bfloat16) in its own process, one after the other, for --profile-iterations
under TensorFlow's profiler, and prints the share of op time in convs (for Winograd, its
transforms too), casts, element-wise ops (bias, ReLU, gradient sums), pooling, the costs and
Adam.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "output"
sys.path.insert(0, str(ROOT))

from grading.references import ALPHA, BETA, CONTENT_LAYER, STYLE_LAYERS  # noqa: E402  (section 4)
WARM_UP = 2


def peak_rss_mb():
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited on fork)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def iteration_gflop(height, width, widths):
    """FLOPs of one iteration: the convs up to conv5_1 forward, and as much again backward (the
    gradient with respect to each conv's input; the weights are constants)."""
    from nst_course.vgg19_file import VGG19_BLOCKS

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


MATMULS = ("tensorflow", "numpy", "tensorflow-bfloat16")


def matmul(library):
    """A function multiplying two MATMUL_SIZE square matrices in `library`: float32 in
    tensorflow or numpy (whose BLAS on some CPUs reaches twice TF's own matmul), bfloat16 in
    tensorflow-bfloat16."""
    if library == "numpy":
        a, b = (np.random.default_rng(i).random((MATMUL_SIZE,) * 2, dtype=np.float32)
                for i in (1, 2))
        return lambda: a @ b
    from nst_utils import tf

    dtype = tf.bfloat16 if library.endswith("bfloat16") else tf.float32
    a, b = (tf.Variable(tf.cast(tf.random_normal([MATMUL_SIZE] * 2), dtype)) for _ in range(2))
    product = tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return lambda: sess.run(product)


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def section_4(weights_path, height, width, notebook, precision="float32", seed=1):
    """Section 4 of the notebook (graded functions from `notebook`), VGG in `precision`
    (bfloat16 also where it is only emulated), built and started from the noisy image of
    `seed`: (session, model, train_step, [J, J_content, J_style])."""
    from grading.notebook import trusted_graded_functions
    from nst_course.precisions import FORCE_BFLOAT16
    from nst_utils import CONFIG, generate_noise_image, load_vgg_model, tf

    CONFIG.CONV_PRECISION = precision
    os.environ[FORCE_BFLOAT16] = "1"  # measure bfloat16 even without the units, as emulated
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
    J = total_cost(J_content, J_style, alpha=ALPHA, beta=BETA)
    train_step = tf.train.AdamOptimizer(2.0).minimize(J)
    sess.run(tf.global_variables_initializer())
    np.random.seed(seed)
    sess.run(model["input"].assign(generate_noise_image(content_image)))
    return sess, model, train_step, [J, J_content, J_style]


def tf1_loop(weights_path, height, width, notebook, precision="float32"):
    """A function running one model_nn iteration of section_4."""
    sess, model, train_step, _ = section_4(weights_path, height, width, notebook, precision)

    def iteration():
        sess.run(train_step)
        sess.run(model["input"])
    iteration.close = sess.close
    return iteration


def tf2_peer(weights_path, height, width, policy="float32"):
    """The same optimisation written as a TF2 tutorial would: eager, tf.function, GradientTape,
    Keras Adam; returns a function running one iteration. With policy "mixed_bfloat16", VGG's
    layers are Keras layers under that policy (bfloat16 computations, float32 weights) and the
    costs float32, as Keras' mixed precision guide has it. Runs in its own process (nst_utils
    switches TF2 behaviour off)."""
    import keras
    import tensorflow as tf

    from nst_course.vgg19_file import VGG19_BLOCKS, read_vgg19_weights
    from nst_utils import generate_noise_image

    tf.compat.v1.enable_v2_behavior()
    weights = read_vgg19_weights(str(weights_path))
    layers = [CONTENT_LAYER] + [layer for layer, _ in STYLE_LAYERS]
    if policy == "float32":
        constants = {name: (tf.constant(k), tf.constant(b)) for name, (k, b) in weights.items()}

        def conv(x, name):
            kernel, bias = constants[name]
            return tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)

        def pool(x):
            return tf.nn.avg_pool2d(x, 2, 2, "SAME")
    else:
        keras.mixed_precision.set_global_policy(policy)
        convs = {}
        for name, (kernel, bias) in weights.items():
            convs[name] = keras.layers.Conv2D(kernel.shape[3], 3, padding="same",
                                              activation="relu")
            convs[name].build((None, None, None, kernel.shape[2]))
            convs[name].set_weights([kernel, bias])

        def conv(x, name):
            return convs[name](x)
        pool = keras.layers.AveragePooling2D(2, 2, padding="same")

    def features(image):
        out, x = {}, image
        for block, n_convs in enumerate(VGG19_BLOCKS, start=1):
            for i in range(1, n_convs + 1):
                x = out[f"conv{block}_{i}"] = conv(x, f"conv{block}_{i}")
                if f"conv{block}_{i}" == "conv5_1":
                    return [tf.cast(out[name], tf.float32) for name in layers]
            x = pool(x)

    def gram(a):
        a = tf.reshape(a, [-1, a.shape[-1]])
        return tf.matmul(a, a, transpose_a=True)

    content_image, style_image = (tf.constant(i, tf.float32) for i in images(height, width))
    a_C = features(content_image)[0]
    style_targets = [(gram(a), a.shape) for a in features(style_image)[1:]]
    np.random.seed(1)
    image = tf.Variable(generate_noise_image(content_image.numpy()).astype(np.float32))
    optimizer = tf.keras.optimizers.Adam(learning_rate=2.0)
    optimizer.build([image])  # its slots now, not inside step(): Keras 3 cannot create them there

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
            J = ALPHA * J_content + BETA * J_style
        optimizer.apply_gradients([(tape.gradient(J, image), image)])

    return lambda: (step(), image.numpy())


# --profile: where an iteration's time goes, from TensorFlow's own profiler (its trace of every
# op run, the XPlane that TensorBoard's profile plugin reads), by kind of op
PROFILE_KINDS = ("convs", "casts", "element-wise", "pooling", "costs", "Adam", "other")
CONV_TYPES = {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "_FusedConv2D"}
ELEMENT_WISE_TYPES = {"Relu", "ReluGrad", "BiasAdd", "BiasAddGrad", "AddV2", "Add", "AddN"}
OTHER_TYPES = {"ReadVariableOp", "Identity", "IdentityN", "Const", "NoOp", "_Send", "_Recv",
               "VariableV2", "VarHandleOp", "_Arg", "_Retval"}


def recording_convs():
    """From now on, the names of the ops nst_course.convs.conv3x3 creates (for Winograd, its
    transforms and matrix products too), in a set this returns."""
    from nst_course import convs

    names, conv3x3 = set(), convs.conv3x3

    def recorded(*args, **kwargs):
        graph = convs.tf.get_default_graph()
        before = len(graph.get_operations())
        y = conv3x3(*args, **kwargs)
        names.update(op.name for op in graph.get_operations()[before:])
        return y
    convs.conv3x3 = recorded
    return names


def profile_kind(name, op_type, conv_ops=frozenset()):
    """PROFILE_KINDS' kind of an op run (name and type as the profiler names them); `conv_ops`:
    the names recording_convs saw, whose ops and gradients are convs whatever their type."""
    scope = name.split("/")
    forward = scope[1][:-len("_grad")] if scope[0].startswith("gradients") and len(scope) > 2 \
        else scope[0]
    if op_type == "Cast":
        return "casts"
    if op_type in CONV_TYPES or name in conv_ops or forward in conv_ops:
        return "convs"
    if op_type in ("AvgPool", "AvgPoolGrad"):
        return "pooling"
    if "adam" in name.lower() or "power" in name or op_type.endswith("ApplyAdam"):
        return "Adam"
    if op_type in ELEMENT_WISE_TYPES:
        return "element-wise"
    return "other" if op_type in OTHER_TYPES else "costs"


def profiled(iteration, iterations, conv_ops=frozenset()):
    """Run `iteration` `iterations` times under TensorFlow's profiler: the seconds per iteration
    (with the profiler on), and the op time per iteration by PROFILE_KINDS (summed over the
    threads that ran ops, so it can exceed the wall time when two ops run at once)."""
    import glob

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        seconds = sum(timed(iteration) for _ in range(iterations)) / iterations
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0])
                              .read_bytes())
    kinds, types = dict.fromkeys(PROFILE_KINDS, 0.0), {}
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                op = plane.event_metadata[event.metadata_id]
                if op.display_name and ":" in op.name:  # an op: "name:Type", its type shown
                    kind = profile_kind(op.name.rsplit(":", 1)[0], op.display_name, conv_ops)
                    kinds[kind] += event.duration_ps * 1e-12 / iterations
                    key = f"{kind}: {op.display_name}"
                    types[key] = types.get(key, 0) + event.duration_ps * 1e-12 / iterations
    return {"seconds_per_iteration": seconds, "op_seconds": kinds,
            "op_seconds_by_type": dict(sorted(types.items(), key=lambda item: -item[1]))}


PROFILED = {"ours, float32": ("tf1", "float32"), "ours, bfloat16": ("tf1", "bfloat16"),
            "TF2 peer, float32": ("peer", "float32"),
            "TF2 peer, Keras mixed_bfloat16": ("peer", "mixed_bfloat16")}


def profile_one(kind, precision, weights, height, width, notebook, iterations):
    """In its own process (see profile): one loop, warmed up once, then profiled; JSON."""
    if kind == "tf1":
        conv_ops = recording_convs()
        iteration = tf1_loop(weights, height, width, notebook, precision)
    else:
        conv_ops, iteration = set(), tf2_peer(weights, height, width, precision)
    iteration()
    print(json.dumps(profiled(iteration, iterations, conv_ops)), flush=True)


def profile(height, width, scale, iterations, notebook):
    """PROFILED, one after the other, each in its own process: the share of op time of each
    of PROFILE_KINDS, printed as a table."""
    from grading.mat_fixture import write_vgg19_mat

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        weights = write_vgg19_mat(Path(scratch) / "vgg19.mat", width_scale=scale, with_fc=False)
        for loop, (kind, precision) in PROFILED.items():
            run = subprocess.run([sys.executable, __file__, "--profile-one", kind, precision,
                                  str(weights), str(height), str(width), notebook,
                                  str(iterations)], capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"profiling {loop} failed:\n{run.stderr[-2000:]}")
            results[loop] = json.loads(run.stdout.splitlines()[-1])
    print(f"{width}x{height}, {iterations} profiled iterations each (after one to warm up), "
          f"share of op time (TensorFlow's profiler; op time summed over threads):", flush=True)
    print(f"| loop | s/iteration (profiling) | op s/iteration | "
          + " | ".join(PROFILE_KINDS) + " |")
    print("|---" * (3 + len(PROFILE_KINDS)) + "|")
    for loop, found in results.items():
        total = sum(found["op_seconds"].values())
        print(f"| {loop} | {found['seconds_per_iteration']:.3f} | {total:.3f} | " + " | ".join(
            f"{100 * found['op_seconds'][kind] / total:.1f} %" for kind in PROFILE_KINDS)
              + " |", flush=True)
    return results


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
    whose threads may still be spinning); the seconds of each after the warm-up rounds."""
    times = []
    for round_ in range(WARM_UP + iterations):
        order = range(len(timers)) if round_ % 2 == 0 else reversed(range(len(timers)))
        seconds = {i: timers[i]() for i in order}
        times.append([seconds[i] for i in range(len(timers))])
    return [list(column) for column in zip(*times[WARM_UP:])]


def medians(columns):
    return [statistics.median(column) for column in columns]


def max_relative_error(got, expected):
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def layer_shapes(height, width, widths):
    """{name: (height, width, C_in, C_out, by Winograd in load_vgg_model)} of the first conv of
    each distinct shape from conv1_2 to conv5_1."""
    from nst_course.convs import WINOGRAD_MIN_CHANNELS
    from nst_course.vgg19_file import VGG19_BLOCKS

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
    """Per distinct conv shape: forward + input gradient, direct in float32, by Winograd, and
    direct in bfloat16 (input and kernel rounded, result float32), in turns."""
    from nst_course.convs import conv3x3, tf

    rows = []
    for name, (h, w, c_in, c_out, used) in layer_shapes(height, width, widths).items():
        rng = np.random.default_rng(0)
        kernel = rng.normal(0, np.sqrt(2 / (9 * c_in)), (3, 3, c_in, c_out)).astype(np.float32)
        with tf.Graph().as_default(), tf.Session() as sess:
            x = tf.Variable(rng.normal(size=(1, h, w, c_in)).astype(np.float32))
            # a variable, not a constant: Grappler would compute a gradient of constants once
            mix = tf.Variable(rng.normal(size=(1, h, w, c_out)).astype(np.float32))
            runs, values = [], []
            for winograd, precision in ((False, "float32"), (True, "float32"),
                                        (False, "bfloat16")):
                y = conv3x3(x, kernel, winograd, precision)
                grad = tf.gradients(tf.reduce_sum(y * mix), x)[0]
                # fetch sums: a tf.group of the two would let Grappler skip their work
                step = tf.reduce_sum(y) + tf.reduce_sum(grad)
                runs.append(lambda step=step: timed(lambda: sess.run(step)))
                values.append((y, grad))
            sess.run(tf.global_variables_initializer())
            (y0, g0), (y1, g1), (y2, g2) = sess.run(values)
            direct, fast, bfloat16 = medians(take_turns(runs, iterations))
        gflop = 2 * 2 * h * w * 9 * c_in * c_out / 1e9
        rows.append({"layer": name, "shape": [1, h, w, c_in, c_out], "winograd_used": used,
                     "direct_ms": 1e3 * direct, "winograd_ms": 1e3 * fast,
                     "bfloat16_ms": 1e3 * bfloat16, "direct_gflops": gflop / direct,
                     "winograd_effective_gflops": gflop / fast, "bfloat16_gflops": gflop / bfloat16,
                     "max_rel_error_activation": max_relative_error(y1, y0),
                     "max_rel_error_gradient": max_relative_error(g1, g0),
                     "bfloat16_max_rel_error_activation": max_relative_error(y2, y0),
                     "bfloat16_max_rel_error_gradient": max_relative_error(g2, g0)})
        row = rows[-1]
        print(f"{name} {h}x{w} {c_in}->{c_out}: forward+gradient direct {row['direct_ms']:.1f} "
              f"ms, Winograd {row['winograd_ms']:.1f} ms ({fast / direct:.2f}x"
              f"{', used' if used else ', not used'}), bfloat16 {row['bfloat16_ms']:.1f} ms "
              f"({bfloat16 / direct:.2f}x); max relative error Winograd "
              f"{row['max_rel_error_activation']:.1e} / {row['max_rel_error_gradient']:.1e}, "
              f"bfloat16 {row['bfloat16_max_rel_error_activation']:.1e} / "
              f"{row['bfloat16_max_rel_error_gradient']:.1e}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 150x200 images, a quarter of VGG-19's widths")
    parser.add_argument("--iterations", type=int, default=12, help="timed iterations (>= 10)")
    parser.add_argument("--notebook", default=str(ROOT / "nst_assignment.ipynb"))
    parser.add_argument("--json", help="also write the results to this JSON file")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--layers", action="store_true",
                      help="only the per-layer times: direct, by Winograd, in bfloat16")
    only.add_argument("--accuracy", action="store_true",
                      help="only the accuracy run: float32 against bfloat16")
    only.add_argument("--run-time", action="store_true",
                      help="only a student's run: section 4 built and run for "
                           "--accuracy-iterations (200) in float32, timed as a whole")
    only.add_argument("--profile", action="store_true",
                      help="only where the time goes: the share of convs, casts, element-wise "
                           "ops, pooling, costs and Adam in an iteration of each loop")
    parser.add_argument("--profile-iterations", type=int, default=2,
                        help="profiled iterations of each loop with --profile (2)")
    parser.add_argument("--accuracy-iterations", type=int,
                        help="iterations of the accuracy run (200; 21 with --quick; 0: none)")
    parser.add_argument("--accuracy-size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"),
                        help="image size of the accuracy run (default: the benchmark's)")
    parser.add_argument("--out", default=str(OUT),
                        help=f"folder for the accuracy run's figure (default {OUT})")
    parser.add_argument("--loop", nargs=5, metavar=("PRECISION", "WEIGHTS", "HEIGHT", "WIDTH",
                                                    "NOTEBOOK"),
                        help=argparse.SUPPRESS)  # internal: serve a TF1 loop's iterations
    parser.add_argument("--peer", nargs=4, metavar=("WEIGHTS", "HEIGHT", "WIDTH", "POLICY"),
                        help=argparse.SUPPRESS)  # internal: serve the TF2 peer's iterations
    parser.add_argument("--matmul", choices=MATMULS,
                        help=argparse.SUPPRESS)  # internal: serve matmuls
    parser.add_argument("--profile-one", nargs=7, help=argparse.SUPPRESS)  # internal: profile
    args = parser.parse_args(argv)
    if args.iterations < (1 if args.quick else 10):
        parser.error("--iterations: at least 10 timed iterations (at least 1 with --quick)")

    if args.loop:
        precision, weights, height, width, notebook = args.loop
        return serve(tf1_loop(weights, int(height), int(width), notebook, precision))
    if args.peer:
        return serve(tf2_peer(args.peer[0], int(args.peer[1]), int(args.peer[2]), args.peer[3]))
    if args.matmul:
        return serve(matmul(args.matmul))
    if args.profile_one:
        kind, precision, weights, height, width, notebook, iterations = args.profile_one
        return profile_one(kind, precision, weights, int(height), int(width), notebook,
                           int(iterations))

    from grading.mat_fixture import scaled_widths

    scale, (height, width) = (0.25, (150, 200)) if args.quick else (1.0, (300, 400))
    widths = scaled_widths(scale)
    results = {"size": f"{width}x{height}", "vgg_width_scale": scale,
               "timed_iterations": args.iterations, "cpu": cpu_name(),
               "native_bfloat16": native_bfloat16()}
    if args.run_time:
        results["run_time"] = run_time(height, width, scale, args.accuracy_iterations or (
            21 if args.quick else 200), args.notebook)
    elif args.profile:
        results["profile"] = profile(height, width, scale, args.profile_iterations,
                                     args.notebook)
    elif not args.accuracy:
        if not args.layers:
            results.update(whole_iteration(height, width, scale, args.iterations, args.notebook))
        results["layers"] = layer_times(height, width, widths, args.iterations)
    if not (args.layers or args.run_time or args.profile) and args.accuracy_iterations != 0:
        results["accuracy"] = accuracy_run(
            *(args.accuracy_size or (height, width)), scale,
            args.accuracy_iterations or (21 if args.quick else 200), args.notebook,
            Path(args.out))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def cpu_name():
    """The processor's model name (Linux), for the results."""
    import platform

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def native_bfloat16():
    """Whether this machine computes bfloat16 convs natively; says why not if it does not."""
    from nst_course.convs import _no_native_bfloat16, tf

    reason = _no_native_bfloat16(tf.config.list_physical_devices("GPU"))
    if reason:
        print(f"No native bfloat16 here: {reason}. Every bfloat16 number below is emulated.",
              flush=True)
    return reason is None


def whole_iteration(height, width, scale, iterations, notebook):
    """The TF1 loop in float32 and in bfloat16, the TF2 peer in float32 and under Keras'
    mixed_bfloat16 policy, and the matmul peaks (TF's and NumPy's float32, TF's bfloat16), in
    turns: loops' medians, peaks' best; effective GFLOP/s against the peaks; peak RSS."""
    from grading.mat_fixture import scaled_widths, write_vgg19_mat

    with tempfile.TemporaryDirectory() as scratch:
        weights = write_vgg19_mat(Path(scratch) / "vgg19.mat", width_scale=scale, with_fc=False)
        iteration = tf1_loop(weights, height, width, notebook)
        helpers = [Helper("--loop", "bfloat16", weights, height, width, notebook),
                   Helper("--peer", weights, height, width, "float32"),
                   Helper("--peer", weights, height, width, "mixed_bfloat16"),
                   *(Helper("--matmul", library) for library in MATMULS)]
        columns = take_turns([lambda: timed(iteration)] + [h.step for h in helpers], iterations)
        tf1_rss = peak_rss_mb()
        iteration.close()
        bf16_rss, peer_rss, mixed_rss, *_ = (helper.close() for helper in helpers)
    tf1_seconds, bf16_seconds, peer_seconds, mixed_seconds = medians(columns[:4])
    peaks = {library: 2 * MATMUL_SIZE ** 3 / min(seconds) / 1e9
             for library, seconds in zip(MATMULS, columns[4:])}
    peak_gflops = max(peaks["tensorflow"], peaks["numpy"])
    bf16_peak = peaks["tensorflow-bfloat16"]
    gflop = iteration_gflop(height, width, scaled_widths(scale))
    results = {
        "tf1_seconds_per_iteration": tf1_seconds, "tf2_peer_seconds_per_iteration": peer_seconds,
        "ratio_tf1_to_peer": tf1_seconds / peer_seconds, "gflop_per_iteration": gflop,
        "tf1_effective_gflops": gflop / tf1_seconds, "matmul_peak_gflops": peak_gflops,
        "matmul_gflops_tensorflow": peaks["tensorflow"], "matmul_gflops_numpy": peaks["numpy"],
        "fraction_of_peak": gflop / tf1_seconds / peak_gflops,
        "tf1_peak_rss_mb": tf1_rss, "peer_peak_rss_mb": peer_rss,
        "bfloat16_seconds_per_iteration": bf16_seconds,
        "mixed_bfloat16_peer_seconds_per_iteration": mixed_seconds,
        "ratio_bfloat16_to_peer": bf16_seconds / peer_seconds,
        "ratio_bfloat16_to_mixed_peer": bf16_seconds / mixed_seconds,
        "bfloat16_effective_gflops": gflop / bf16_seconds,
        "matmul_peak_bfloat16_gflops": bf16_peak,
        "bfloat16_fraction_of_peak": gflop / bf16_seconds / bf16_peak,
        "bfloat16_peak_rss_mb": bf16_rss, "mixed_peer_peak_rss_mb": mixed_rss,
    }
    print(f"{width}x{height}: TF1 loop {tf1_seconds:.3f} s/iteration, TF2 peer "
          f"{peer_seconds:.3f} s (ratio {results['ratio_tf1_to_peer']:.2f}, in turns); "
          f"{gflop:.0f} GFLOP/iteration (direct convs) = {results['tf1_effective_gflops']:.0f} "
          f"effective GFLOP/s, {100 * results['fraction_of_peak']:.0f}% of the "
          f"{peak_gflops:.0f} GFLOP/s float32 matmul peak (best of TF {peaks['tensorflow']:.0f}, "
          f"NumPy {peaks['numpy']:.0f}); peak RSS {tf1_rss:.0f} MB (peer {peer_rss:.0f} MB)",
          flush=True)
    print(f"{width}x{height} bfloat16: TF1 loop {bf16_seconds:.3f} s/iteration, ratio "
          f"{results['ratio_bfloat16_to_peer']:.2f} to the float32 peer, "
          f"{results['ratio_bfloat16_to_mixed_peer']:.2f} to the mixed_bfloat16 peer "
          f"({mixed_seconds:.3f} s); {results['bfloat16_effective_gflops']:.0f} effective "
          f"GFLOP/s, {100 * results['bfloat16_fraction_of_peak']:.0f}% of the {bf16_peak:.0f} "
          f"GFLOP/s bfloat16 matmul peak; peak RSS {bf16_rss:.0f} MB (peer {mixed_rss:.0f} MB)",
          flush=True)
    return results


def run_time(height, width, scale, iterations, notebook):
    """Seconds a student waits for section 4 in float32: the graph built, then `iterations`
    model_nn iterations with the costs read every 20 (as model_nn does, without the pictures)."""
    from grading.mat_fixture import write_vgg19_mat

    with tempfile.TemporaryDirectory() as scratch:
        weights = write_vgg19_mat(Path(scratch) / "vgg19.mat", width_scale=scale, with_fc=False)
        started = time.perf_counter()
        sess, model, train_step, costs = section_4(weights, height, width, notebook)
        built = time.perf_counter() - started
        for i in range(iterations):
            sess.run(train_step)
            sess.run(model["input"])
            if i % 20 == 0:
                sess.run(costs)
        sess.close()
    seconds = time.perf_counter() - started
    load = os.getloadavg()
    print(f"{width}x{height}, float32: {iterations} iterations in {seconds:.0f} s "
          f"({seconds / 60:.1f} min; graph built in {built:.0f} s, then "
          f"{(seconds - built) / iterations:.2f} s per iteration); load average at the end "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}", flush=True)
    return {"iterations": iterations, "seconds": seconds, "build_seconds": built,
            "seconds_per_iteration": (seconds - built) / iterations, "load_average": load}


def psnr(a, b):
    """Peak signal-to-noise ratio of two uint8 pictures, in dB."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255 ** 2 / mse))


def accuracy_run(height, width, scale, iterations, notebook, out):
    """Section 4 for `iterations` in float32 and then in bfloat16, from the same start (seed
    1): the relative difference of every cost model_nn prints (every 20 iterations), the PSNR of
    the final pictures, and float32 | bfloat16 | difference saved as accuracy.png in `out`. For
    scale, the same for float32 from another start (seed 2) against seed 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grading.mat_fixture import write_vgg19_mat
    from nst_utils import deprocess_image

    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        weights = write_vgg19_mat(Path(scratch) / "vgg19.mat", width_scale=scale, with_fc=False)
        for precision, seed in (("float32", 1), ("bfloat16", 1), ("float32", 2)):
            started = time.perf_counter()
            sess, model, train_step, costs = section_4(weights, height, width, notebook,
                                                       precision, seed)
            printed = []
            for i in range(iterations):
                sess.run(train_step)
                image = sess.run(model["input"])
                if i % 20 == 0:
                    printed.append([float(cost) for cost in sess.run(costs)])
            sess.close()
            runs[precision, seed] = printed, deprocess_image(image), time.perf_counter() - started
    ((exact, picture, seconds), (rounded, rounded_picture, bf16_seconds),
     (other, other_picture, _)) = runs.values()
    names = ("total", "content", "style")

    def relative(a, b):
        return {name: abs(y - x) / abs(x) for name, x, y in zip(names, a, b)}
    reports = [{"iteration": 20 * n, "float32": dict(zip(names, e)),
                "bfloat16": dict(zip(names, r)), "relative_difference": relative(e, r),
                "float32_seed_2": dict(zip(names, o)), "seed_2_relative_difference": relative(e, o)}
               for n, (e, r, o) in enumerate(zip(exact, rounded, other))]

    def worst(key):
        return {name: max(report[key][name] for report in reports) for name in names}
    difference = np.abs(picture.astype(np.int16) - rounded_picture.astype(np.int16))
    results = {"size": f"{width}x{height}", "iterations": iterations, "reports": reports,
               "max_relative_difference": worst("relative_difference"),
               "psnr_db": psnr(picture, rounded_picture),
               "max_pixel_difference": int(difference.max()),
               "float32_other_start": {
                   "max_relative_difference": worst("seed_2_relative_difference"),
                   "psnr_db": psnr(picture, other_picture)},
               "seconds": {"float32": seconds, "bfloat16": bf16_seconds}}
    for report in reports:
        print(f"iteration {report['iteration']}: " + ", ".join(
            f"{name} {report['float32'][name]:.4g} / {report['bfloat16'][name]:.4g} "
            f"({100 * report['relative_difference'][name]:.2f} %)" for name in names)
            + "; float32 from seed 2: " + ", ".join(
                f"{100 * report['seed_2_relative_difference'][name]:.2f} %" for name in names),
            flush=True)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, shown, title in zip(axes, (picture, rounded_picture,
                                       np.clip(10 * difference, 0, 255).astype(np.uint8)),
                                ("float32", "bfloat16", "|difference| x 10")):
        ax.imshow(shown)
        ax.set_title(title)
        ax.axis("off")
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / "accuracy.png", dpi=100, bbox_inches="tight")
    results["figure"] = str(out / "accuracy.png")
    apart, seeds = results["max_relative_difference"], results["float32_other_start"]
    print(f"{width}x{height}, {iterations} iterations from the same start, float32 against "
          f"bfloat16: printed costs at most {100 * apart['total']:.2f} % apart (total), "
          f"{100 * apart['content']:.2f} % (content), {100 * apart['style']:.2f} % (style); "
          f"final pictures {results['psnr_db']:.1f} dB PSNR apart (largest pixel difference "
          f"{results['max_pixel_difference']}); side by side in {results['figure']}; "
          f"{seconds:.0f} s and {bf16_seconds:.0f} s. Two float32 runs from seeds 1 and 2: "
          f"costs at most {100 * max(seeds['max_relative_difference'].values()):.2f} % apart, "
          f"pictures {seeds['psnr_db']:.1f} dB PSNR apart", flush=True)
    return results


if __name__ == "__main__":
    main()
