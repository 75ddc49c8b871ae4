"""CONFIG.CONV_PRECISION: VGG-19's convs in float32 (the default, what grading uses) or in
bfloat16 where the machine computes it natively; Winograd only for float32 on a CPU."""
import base64

import numpy as np
import pytest

from grading.mat_fixture import scaled_widths
import nst_utils
from nst_utils import CONFIG, conv3x3, load_vgg_model, tf

NO_NATIVE = "CONFIG.CONV_PRECISION is 'bfloat16', but "


@pytest.fixture
def machine(monkeypatch):
    """A machine as the test says: CONFIG.CONV_PRECISION, the CPU's flags, oneDNN, GPUs (their
    compute capability); NST_FORCE_BFLOAT16 unset, nothing said yet, Winograd from block 3 of
    the small files (as from block 3 of the real one)."""
    monkeypatch.delenv(nst_utils.FORCE_BFLOAT16, raising=False)
    monkeypatch.setattr(nst_utils, "_said", set())
    monkeypatch.setattr(nst_utils, "WINOGRAD_MIN_CHANNELS", scaled_widths(1 / 32)[2])

    def set_up(precision="float32", cpu_flags=(), onednn=True, gpu_capability=None):
        monkeypatch.setattr(CONFIG, "CONV_PRECISION", precision)
        monkeypatch.setattr(nst_utils, "_cpu_flags", lambda: set(cpu_flags))
        monkeypatch.setattr(nst_utils, "_onednn_on", lambda: onednn)
        gpus = [] if gpu_capability is None else [
            tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
        monkeypatch.setattr(nst_utils, "_visible_gpus", lambda: gpus)
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
    monkeypatch.delenv(nst_utils.FORCE_BFLOAT16, raising=False)
    monkeypatch.setattr(nst_utils, "_said", set())
    monkeypatch.setattr(CONFIG, "CONV_PRECISION", "bfloat16")
    native = bool(nst_utils.BFLOAT16_CPU_FLAGS & nst_utils._cpu_flags()) and nst_utils._onednn_on()
    dtypes, _ = conv_ops(tiny_vgg_path)
    assert set(dtypes) == {"bfloat16" if native else "float32"}
    assert (NO_NATIVE in capsys.readouterr().out) == (not native)


def test_forced_bfloat16_runs_where_it_is_emulated(machine, monkeypatch, tiny_vgg_path, capsys):
    machine("bfloat16", cpu_flags={"avx2"})
    monkeypatch.setenv(nst_utils.FORCE_BFLOAT16, "1")
    assert conv_ops(tiny_vgg_path) == (["bfloat16"] * (16 + 13), 0)
    assert capsys.readouterr().out == ""


def test_an_unknown_precision_is_refused(machine, tiny_vgg_path):
    machine("float16")
    with pytest.raises(ValueError, match="CONFIG.CONV_PRECISION is 'float16': use one of "
                                         "'float32', 'bfloat16'."):
        load_vgg_model(str(tiny_vgg_path))


def test_winograd_is_float32_only():
    with tf.Graph().as_default(), pytest.raises(ValueError, match="float32 only"):
        conv3x3(tf.zeros([1, 4, 4, 2]), np.ones((3, 3, 2, 2), np.float32), winograd=True,
                precision="bfloat16")


def test_bfloat16_model_is_float32_outside_the_convs_and_within_bfloat16_round_off(
        machine, monkeypatch, tiny_vgg_path):
    """Against the float32 model: activations within a few per cent of each layer's largest
    value (bfloat16 keeps 8 significant bits, 0.2 % round-off per value, through up to 13
    convs). The input gradient is touchier: a value rounded near 0 flips a ReLU's mask, and so
    does rounding the input alone (float32 convs on the image rounded to bfloat16; measured,
    relative L2 difference 0.05 of the gradient back from conv4_2); the bfloat16 model's may
    differ at most 3 times as much (measured 0.09)."""
    machine()
    monkeypatch.setenv(nst_utils.FORCE_BFLOAT16, "1")
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
    from grading.sandbox import clean_environment

    monkeypatch.setattr(tf.config, "list_physical_devices", cuda_started)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(nst_utils, "_nvidia_driver_present", lambda: False)
    assert nst_utils._visible_gpus() == []
    monkeypatch.setattr(nst_utils, "_nvidia_driver_present", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", clean_environment()["CUDA_VISIBLE_DEVICES"])
    assert nst_utils._visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a driver, a GPU shown: ask
    with pytest.raises(AssertionError, match="CUDA started"):
        nst_utils._visible_gpus()


def test_the_graders_zygote_warms_up_without_starting_cuda(monkeypatch):
    """On a machine with an NVIDIA driver, the zygote's warm-up (before it forks the workers)
    builds VGG-19 without asking TensorFlow for the GPUs."""
    from grading import worker
    from grading.sandbox import clean_environment

    monkeypatch.setattr(tf.config, "list_physical_devices", cuda_started)
    monkeypatch.setattr(nst_utils, "_nvidia_driver_present", lambda: True)
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
    monkeypatch.setenv(nst_utils.FORCE_BFLOAT16, "1")
    with pytest.raises(GraphSent) as sent:
        reference_run.run({"seed": 3}, send)
    meta = tf.MetaGraphDef.FromString(base64.b64decode(sent.value.args[0]))
    convs = [node.attr["T"].type for node in meta.graph_def.node if node.op == "Conv2D"]
    assert convs and set(convs) == {tf.float32.as_datatype_enum}
