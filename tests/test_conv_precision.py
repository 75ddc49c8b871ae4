"""CONFIG.CONV_PRECISION: VGG-19 in float32 (the default, what grading uses) or, where the
machine computes it natively, in bfloat16 from the input's cast on, with a float32 copy of each
layer for what reads it; Winograd only for float32 on a CPU."""
import base64
import collections
import re

import numpy as np
import pytest

from grading.mat_fixture import scaled_widths
from nst_course import convs as nst_convs
from nst_course.convs import conv3x3
from nst_utils import CONFIG, load_vgg_model, tf

NO_NATIVE = "CONFIG.CONV_PRECISION is 'bfloat16', but "


@pytest.fixture
def machine(monkeypatch):
    """A machine as the test says: CONFIG.CONV_PRECISION, the CPU's flags, oneDNN, GPUs (their
    compute capability); NST_FORCE_BFLOAT16 unset, nothing said yet, Winograd from block 3 of
    the small files (as from block 3 of the real one)."""
    monkeypatch.delenv(nst_convs.FORCE_BFLOAT16, raising=False)
    monkeypatch.setattr(nst_convs, "_said", set())
    monkeypatch.setattr(nst_convs, "WINOGRAD_MIN_CHANNELS", scaled_widths(1 / 32)[2])

    def set_up(precision="float32", cpu_flags=(), onednn=True, gpu_capability=None):
        monkeypatch.setattr(CONFIG, "CONV_PRECISION", precision)
        monkeypatch.setattr(nst_convs, "_cpu_flags", lambda: set(cpu_flags))
        monkeypatch.setattr(nst_convs, "_onednn_on", lambda: onednn)
        gpus = [] if gpu_capability is None else [
            tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
        monkeypatch.setattr(nst_convs, "_visible_gpus", lambda: gpus)
        monkeypatch.setattr(tf.config.experimental, "get_device_details",
                            lambda device: {"compute_capability": gpu_capability})
    return set_up


def conv_ops(path):
    """(dtypes of the Conv2D ops, number of MatMul ops) of a model built from `path` and its
    gradient back to the input from conv5_1."""
    tf.reset_default_graph()
    model = load_vgg_model(str(path))
    tf.gradients(tf.reduce_sum(model["conv5_1"]), model["input"])
    ops = tf.get_default_graph().get_operations()
    return ([op.get_attr("T").name for op in ops if op.type == "Conv2D"],
            sum(op.type == "MatMul" for op in ops))


# The layers the notebook's costs read (and so what an Adam step fetches from the model)
COST_LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"]


def op_kind(op):
    """An op's type, with its dtype attribute 'T' where it has a single one: 'Relu bfloat16'."""
    dtype = op.node_def.attr.get("T")
    if dtype is not None and dtype.WhichOneof("value") == "type":
        return f"{op.type} {tf.as_dtype(dtype.type).name}"
    return op.type


def model_and_cost_gradient(path):
    """A model built from `path`, and the gradient with respect to its input of the sum of the
    COST_LAYERS (as the costs read them)."""
    tf.reset_default_graph()
    model = load_vgg_model(str(path))
    cost = tf.add_n([tf.reduce_sum(model[name]) for name in COST_LAYERS])
    return model, tf.gradients(cost, model["input"])[0]


# What model_and_cost_gradient built in float32 from the tiny file (Winograd from block 3), op
# kinds counted, recorded with the code of before issue 30 (commit b19491b) on TensorFlow 2.21.
# The bfloat16 path of issue 30 is a separate function: the float32 graph must not change.
FLOAT32_GRAPH_BEFORE_ISSUE_30 = {
    "AddN float32": 6, "AddV2 float32": 373, "Assign float32": 1, "AvgPool float32": 5,
    "AvgPoolGrad float32": 4, "ConcatV2 float32": 21, "Const": 2083, "Conv2D float32": 8,
    "DepthToSpace float32": 21, "Fill float32": 1, "Identity float32": 17, "IdentityN": 16,
    "MatMul float32": 336, "Pad float32": 21, "Relu float32": 16, "ReluGrad float32": 13,
    "Reshape float32": 481, "StridedSlice float32": 433, "Sub float32": 567, "Sum float32": 19,
    "Tile float32": 6, "VariableV2": 1, "ZerosLike float32": 13,
}


def test_float32_is_the_default():
    assert CONFIG.CONV_PRECISION == "float32"


def test_float32_on_a_cpu_is_as_before_winograd_for_the_wide_convs_and_no_casts(
        machine, tiny_vgg_path, capsys):
    machine(cpu_flags={"amx_bf16", "avx512_bf16"})
    dtypes, matmuls = conv_ops(tiny_vgg_path)
    # blocks 1-2 direct (4 convs, 4 gradients), blocks 3-5 by Winograd: 16 products per conv
    assert dtypes == ["float32"] * 8 and matmuls == 16 * (12 + 9)
    assert "Cast" not in {op.type for op in tf.get_default_graph().get_operations()}
    assert capsys.readouterr().out == ""


def test_float32_graph_is_op_for_op_the_one_of_before_bfloat16_activations(
        machine, tiny_vgg_path):
    machine(cpu_flags={"amx_bf16", "avx512_bf16"})
    model_and_cost_gradient(tiny_vgg_path)
    found = collections.Counter(map(op_kind, tf.get_default_graph().get_operations()))
    assert dict(found) == FLOAT32_GRAPH_BEFORE_ISSUE_30


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_on_a_gpu_every_conv_is_direct(machine, tiny_vgg_path, precision):
    """With the device list stubbed: a GPU TensorFlow places the convs on runs them directly,
    in bfloat16 where it has the units (compute capability 8.0 and up)."""
    machine(precision, gpu_capability=(8, 0))
    assert conv_ops(tiny_vgg_path) == ([precision] * (16 + 13), 0)


def test_bfloat16_on_a_processor_with_the_units_runs_every_conv_direct_in_bfloat16(
        machine, tiny_vgg_path, capsys):
    machine("bfloat16", cpu_flags={"avx512f", "avx512_bf16"})
    assert conv_ops(tiny_vgg_path) == (["bfloat16"] * (16 + 13), 0)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("machine_has, reason", [
    (dict(cpu_flags={"avx2", "fma", "avx512f"}),
     "this processor has no native bfloat16 (neither AVX512-BF16 nor AMX-BF16)"),
    (dict(cpu_flags={"amx_bf16"}, onednn=False),
     "TensorFlow's oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0), which bfloat16 needs"),
    (dict(gpu_capability=(7, 5)),
     "the GPU has no bfloat16 units (NVIDIA's have them from compute capability 8.0)"),
], ids=["AVX2 or AVX-512 without BF16", "oneDNN off", "older GPU"])
def test_bfloat16_where_it_would_be_emulated_says_so_once_and_runs_float32(
        machine, tiny_vgg_path, capsys, machine_has, reason):
    machine("bfloat16", **machine_has)
    float32 = conv_ops(tiny_vgg_path)
    assert set(float32[0]) == {"float32"}
    conv_ops(tiny_vgg_path)  # a second model: nothing said again
    assert capsys.readouterr().out == (
        f"{NO_NATIVE}{reason}: emulated, it would be no faster, so VGG-19's convs run in "
        f"float32.\n")


def test_this_machine_is_told_apart_by_its_cpu_flags(monkeypatch, tiny_vgg_path, capsys):
    """No stubs: what this machine's /proc/cpuinfo says decides."""
    monkeypatch.delenv(nst_convs.FORCE_BFLOAT16, raising=False)
    monkeypatch.setattr(nst_convs, "_said", set())
    monkeypatch.setattr(CONFIG, "CONV_PRECISION", "bfloat16")
    native = bool(nst_convs.BFLOAT16_CPU_FLAGS & nst_convs._cpu_flags()) and nst_convs._onednn_on()
    dtypes, _ = conv_ops(tiny_vgg_path)
    assert set(dtypes) == {"bfloat16" if native else "float32"}
    assert (NO_NATIVE in capsys.readouterr().out) == (not native)


def test_forced_bfloat16_runs_where_it_is_emulated(machine, monkeypatch, tiny_vgg_path, capsys):
    machine("bfloat16", cpu_flags={"avx2"})
    monkeypatch.setenv(nst_convs.FORCE_BFLOAT16, "1")
    assert conv_ops(tiny_vgg_path) == (["bfloat16"] * (16 + 13), 0)
    assert capsys.readouterr().out == ""


def test_bfloat16_activations_run_in_bfloat16_from_the_input_cast_to_conv5_4(
        machine, monkeypatch, tiny_vgg_path):
    """One Cast of the input, then bfloat16 all the way (convs, biases, ReLUs, pools): every
    float32 op of the forward graph is the input variable's or one of the dict's float32 copies,
    which the network itself never reads. Each layer in the dict is a Cast to float32 of its
    bfloat16 layer, named as the layer (what the notebook prints)."""
    machine("bfloat16", cpu_flags={"avx2"})
    monkeypatch.setenv(nst_convs.FORCE_BFLOAT16, "1")
    tf.reset_default_graph()
    model = load_vgg_model(str(tiny_vgg_path))
    ops = tf.get_default_graph().get_operations()
    casts = [op for op in ops if op.type == "Cast"]
    layers = [name for name in model if name != "input"]
    assert len(casts) == 1 + len(layers) == 22
    for name in layers:
        copy = model[name].op
        assert (copy.type, copy.name, model[name].dtype) == ("Cast", name, tf.float32)
        assert copy.inputs[0].dtype == tf.bfloat16 and copy.outputs[0].consumers() == []
    copies = {model[name].op for name in layers}
    variable = {model["input"].op} | {op for op in ops if model["input"].op in
                                      [i.op for i in op.inputs]}  # its Assign, read and Cast
    float32 = {op for op in ops if op.type != "Const"  # the variable's initial value
               and any(t.dtype.base_dtype == tf.float32 for t in op.outputs)}
    assert float32 <= copies | variable
    computed = [op_kind(op) for op in ops if op.type in ("Conv2D", "AddV2", "Relu", "AvgPool")]
    assert collections.Counter(computed) == {"Conv2D bfloat16": 16, "AddV2 bfloat16": 16,
                                             "Relu bfloat16": 16, "AvgPool bfloat16": 5}


def test_bfloat16_between_two_convs_forward_and_backward(machine, monkeypatch, tiny_vgg_path):
    """From conv1_1's conv to conv1_2's (bias, ReLU) and back from conv1_2's input gradient to
    conv1_1's (ReLU's gradient, the sum with the style cost's gradient through conv1_1's float32
    copy): bfloat16, with no cast in between."""
    machine("bfloat16", cpu_flags={"avx2"})
    monkeypatch.setenv(nst_convs.FORCE_BFLOAT16, "1")
    model_and_cost_gradient(tiny_vgg_path)
    convs = [op for op in tf.get_default_graph().get_operations() if op.type == "Conv2D"]
    forward, backward = convs[:16], convs[16:]  # the graph's order: the model, then tf.gradients

    def between(earlier, later):
        """The ops on the paths from `earlier`'s output to `later`'s input."""
        def reached(op, step):
            found, todo = set(), [op]
            while todo:
                for next_op in step(todo.pop()):
                    if next_op not in found:
                        found.add(next_op)
                        todo.append(next_op)
            return found
        after = reached(earlier, lambda op: [c for t in op.outputs for c in t.consumers()])
        before = reached(later, lambda op: [t.op for t in op.inputs])
        assert later in after, f"{earlier.name} does not lead to {later.name}"
        return after & before

    # conv1_1 then conv1_2 forward; backward, conv1_2's input gradient, then conv1_1's
    for ops in (between(forward[0], forward[1]), between(backward[-2], backward[-1])):
        kinds = collections.Counter(map(op_kind, ops))
        assert ops and "Cast" not in kinds, kinds
        assert {t.dtype for op in ops for t in op.outputs} == {tf.bfloat16}, kinds


def test_bfloat16_adam_step_updates_the_float32_input_and_casts_only_what_the_costs_read(
        machine, monkeypatch, tiny_vgg_path):
    """The gradient reaches the float32 input through the input's cast and Adam (float32)
    moves it. An Adam step runs 14 Casts: the input's and its gradient's, and for each of the
    6 layers the costs read its float32 copy and that copy's gradient; the other 15 layers'
    copies are in the graph but do not run."""
    machine("bfloat16", cpu_flags={"avx2"})
    monkeypatch.setenv(nst_convs.FORCE_BFLOAT16, "1")
    model, gradient = model_and_cost_gradient(tiny_vgg_path)
    cost = tf.add_n([tf.reduce_sum(tf.square(model[name])) for name in COST_LAYERS])
    train_step = tf.train.AdamOptimizer(2.0).minimize(cost)
    metadata = tf.RunMetadata()
    start = np.random.default_rng(3).uniform(-100, 100, (1, 300, 400, 3)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(model["input"].assign(start))
        assert gradient.dtype == tf.float32 and np.abs(sess.run(gradient)).max() > 0
        sess.run(train_step, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                 run_metadata=metadata)
        moved = sess.run(model["input"]) - start
    assert np.abs(moved).max() > 1  # Adam's first step moves each pixel by about 2.0
    ran = [re.search(r"(\S+) = (\w+)\(", node.timeline_label).groups()
           for device in metadata.step_stats.dev_stats for node in device.node_stats
           if " = " in node.timeline_label]  # "name = Type(inputs)"; Grappler may rename
    assert sum(kind == "Cast" for _, kind in ran) == 14, ran
    names = {name for name, _ in ran}
    assert set(COST_LAYERS) <= names and not names & (set(model) - set(COST_LAYERS) - {"input"})


def test_an_unknown_precision_is_refused(machine, tiny_vgg_path):
    machine("float16")
    with pytest.raises(ValueError, match="CONFIG.CONV_PRECISION is 'float16': use one of "
                                         "'float32', 'bfloat16'."):
        load_vgg_model(str(tiny_vgg_path))


def test_winograd_is_float32_only():
    with tf.Graph().as_default(), pytest.raises(ValueError, match="float32 only"):
        conv3x3(tf.zeros([1, 4, 4, 2]), np.ones((3, 3, 2, 2), np.float32), winograd=True,
                precision="bfloat16")


def test_bfloat16_model_gives_float32_layers_within_bfloat16_round_off(
        machine, monkeypatch, tiny_vgg_path):
    """Against the float32 model: activations within a few per cent of each layer's largest
    value (bfloat16 keeps 8 significant bits, 0.2 % round-off per value, through up to 13
    convs with their biases, ReLUs and pools). The input gradient is touchier: a value rounded near 0 flips a ReLU's mask, and so
    does rounding the input alone (float32 convs on the image rounded to bfloat16; measured,
    relative L2 difference 0.05 of the gradient back from conv4_2); the bfloat16 model's may
    differ at most 3 times as much (measured 0.09)."""
    machine()
    monkeypatch.setenv(nst_convs.FORCE_BFLOAT16, "1")
    image = np.random.default_rng(5).uniform(-120, 135, (1, 300, 400, 3)).astype(np.float32)
    rounded = image.astype(tf.bfloat16.as_numpy_dtype).astype(np.float32)
    layers = ["conv1_1", "conv2_2", "conv3_1", "conv4_2", "conv5_1", "avgpool5"]
    found = {}
    for run, precision, start in [("float32", "float32", image), ("bfloat16", "bfloat16", image),
                                  ("rounded input", "float32", rounded)]:
        monkeypatch.setattr(CONFIG, "CONV_PRECISION", precision)
        tf.reset_default_graph()
        model = load_vgg_model(str(tiny_vgg_path))
        assert {model[name].dtype.base_dtype for name in model} == {tf.float32}
        gradient = tf.gradients(tf.reduce_sum(tf.square(model["conv4_2"])), model["input"])[0]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(model["input"].assign(start))
            found[run] = sess.run([model[name] for name in layers] + [gradient])
    for name, exact, rounded in zip(layers, found["float32"], found["bfloat16"]):
        error = np.abs(rounded - exact).max() / np.abs(exact).max()
        assert 1e-4 < error < 0.03, (name, error)  # really rounded, and not by much

    def gradient_difference(run):
        exact = found["float32"][-1]
        return np.linalg.norm(found[run][-1] - exact) / np.linalg.norm(exact)
    assert gradient_difference("bfloat16") < 3 * gradient_difference("rounded input")


def cuda_started(kind=None):
    raise AssertionError("TensorFlow was asked for the GPUs: CUDA started")


def test_no_gpu_is_looked_for_where_cuda_must_not_start(monkeypatch):
    """Without an NVIDIA driver, or with the GPUs hidden (as the grader's sandbox hides them),
    there are no GPUs, and TensorFlow is not asked: asking starts CUDA, which must not run in a
    process that forks."""
    from grading.confinement import clean_environment

    monkeypatch.setattr(tf.config, "list_physical_devices", cuda_started)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(nst_convs, "nvidia_driver_present", lambda: False)
    assert nst_convs._visible_gpus() == []
    monkeypatch.setattr(nst_convs, "nvidia_driver_present", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", clean_environment()["CUDA_VISIBLE_DEVICES"])
    assert nst_convs._visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a driver, a GPU shown: ask
    with pytest.raises(AssertionError, match="CUDA started"):
        nst_convs._visible_gpus()


def test_the_graders_zygote_warms_up_without_starting_cuda(monkeypatch):
    """On a machine with an NVIDIA driver, the zygote's warm-up (before it forks the workers)
    builds VGG-19 without asking TensorFlow for the GPUs."""
    from grading import worker
    from grading.confinement import clean_environment

    monkeypatch.setattr(tf.config, "list_physical_devices", cuda_started)
    monkeypatch.setattr(nst_convs, "nvidia_driver_present", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", clean_environment()["CUDA_VISIBLE_DEVICES"])
    worker.warm_up()


def test_graded_runs_are_float32_whatever_a_notebook_asks_for(monkeypatch):
    """The model_nn graph every submission is graded on (the reference run's) has float32 convs
    even with CONFIG.CONV_PRECISION = "bfloat16" and NST_FORCE_BFLOAT16=1 in the process."""
    from grading import reference_run

    class GraphSent(Exception):
        pass

    def send(record):
        raise GraphSent(record["graph"])

    for setting in ("IMAGE_HEIGHT", "IMAGE_WIDTH"):
        monkeypatch.setattr(CONFIG, setting, getattr(CONFIG, setting))
    monkeypatch.setattr(CONFIG, "CONV_PRECISION", "bfloat16")
    monkeypatch.setenv(nst_convs.FORCE_BFLOAT16, "1")
    with pytest.raises(GraphSent) as sent:
        reference_run.run({"seed": 3}, send)
    meta = tf.MetaGraphDef.FromString(base64.b64decode(sent.value.args[0]))
    convs = [node.attr["T"].type for node in meta.graph_def.node if node.op == "Conv2D"]
    assert convs and set(convs) == {tf.float32.as_datatype_enum}
