"""benchmarks/bench_nst.py: the FLOP count it reports, the profile's kinds of op, and a quick run
end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_nst  # noqa: E402


def test_flop_count_of_one_iteration_at_300x400_is_forward_and_backward_to_conv5_1():
    forward = 87.1  # GFLOP of VGG-19's convs up to conv5_1 on a 300x400 image
    assert bench_nst.iteration_gflop(300, 400, (64, 128, 256, 512, 512)) == pytest.approx(
        2 * forward, rel=1e-3)


def test_per_layer_shapes_at_300x400_are_the_distinct_convs_and_their_paths():
    shapes = bench_nst.layer_shapes(300, 400, (64, 128, 256, 512, 512))
    assert shapes == {
        "conv1_2": (300, 400, 64, 64, False), "conv2_1": (150, 200, 64, 128, False),
        "conv2_2": (150, 200, 128, 128, False), "conv3_1": (75, 100, 128, 256, True),
        "conv3_2": (75, 100, 256, 256, True), "conv4_1": (38, 50, 256, 512, True),
        "conv4_2": (38, 50, 512, 512, True), "conv5_1": (19, 25, 512, 512, True)}


@pytest.mark.slow
def test_quick_benchmark_reports_the_loops_side_by_side_and_the_accuracy_run(tmp_path):
    report = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_nst.py"), "--quick",
                          "--iterations", "2", "--json", str(report), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(report.read_text())
    assert results["size"] == "200x150" and results["cpu"]
    for key in ("tf1_seconds_per_iteration", "tf2_peer_seconds_per_iteration",
                "matmul_gflops_tensorflow", "matmul_gflops_numpy", "tf1_peak_rss_mb",
                "peer_peak_rss_mb", "bfloat16_seconds_per_iteration",
                "mixed_bfloat16_peer_seconds_per_iteration", "matmul_peak_bfloat16_gflops",
                "bfloat16_peak_rss_mb", "mixed_peer_peak_rss_mb"):
        assert results[key] > 0, key
    assert results["ratio_tf1_to_peer"] == pytest.approx(
        results["tf1_seconds_per_iteration"] / results["tf2_peer_seconds_per_iteration"])
    assert results["ratio_bfloat16_to_mixed_peer"] == pytest.approx(
        results["bfloat16_seconds_per_iteration"]
        / results["mixed_bfloat16_peer_seconds_per_iteration"])
    assert results["matmul_peak_gflops"] == max(results["matmul_gflops_tensorflow"],
                                                results["matmul_gflops_numpy"])
    assert "TF1 loop" in run.stdout and "TF2 peer" in run.stdout
    assert "mixed_bfloat16 peer" in run.stdout
    assert ("Every bfloat16 number below is emulated" in run.stdout) != results["native_bfloat16"]
    assert [row["layer"] for row in results["layers"]] == [
        "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1"]
    for row in results["layers"]:
        assert row["direct_ms"] > 0 and row["winograd_ms"] > 0 and row["bfloat16_ms"] > 0
        assert row["max_rel_error_activation"] < 1e-5 and row["max_rel_error_gradient"] < 1e-5
        # bfloat16: rounded (2^-9 relative per value), not more
        assert 1e-4 < row["bfloat16_max_rel_error_activation"] < 1e-2
        assert 1e-4 < row["bfloat16_max_rel_error_gradient"] < 1e-2
    assert "Winograd" in run.stdout

    accuracy = results["accuracy"]
    assert accuracy["iterations"] == 21 and [r["iteration"] for r in accuracy["reports"]] == [
        0, 20]
    for report_ in accuracy["reports"]:
        for name in ("total", "content", "style"):
            difference = abs(report_["bfloat16"][name] - report_["float32"][name])
            assert report_["relative_difference"][name] == pytest.approx(
                difference / report_["float32"][name])
            assert 0 < report_["relative_difference"][name] < 0.05  # rounded, not broken
    assert 20 < accuracy["psnr_db"] < 100
    other_start = accuracy["float32_other_start"]  # float32 from seed 2 against seed 1
    assert 0 < other_start["psnr_db"] < 100 and 0 < max(
        other_start["max_relative_difference"].values()) < 0.5
    assert (tmp_path / "accuracy.png").exists() and accuracy["figure"] == str(
        tmp_path / "accuracy.png")


def test_psnr_of_pictures_one_grey_level_apart_everywhere():
    a = np.zeros((4, 4, 3), np.uint8)
    assert bench_nst.psnr(a, a + 1) == pytest.approx(20 * np.log10(255))
    assert bench_nst.psnr(a, a) == float("inf")


def test_benchmark_refuses_fewer_than_ten_timed_iterations_at_full_size():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_nst.py"),
                          "--iterations", "3"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "at least 10 timed iterations" in run.stderr


def test_run_time_times_section_4_as_a_student_waits_for_it(tmp_path):
    report = tmp_path / "run.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_nst.py"), "--quick",
                          "--run-time", "--accuracy-iterations", "3", "--json", str(report)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    timed = json.loads(report.read_text())["run_time"]
    assert timed["iterations"] == 3 and timed["seconds"] > timed["build_seconds"] > 0
    assert timed["seconds_per_iteration"] == pytest.approx(
        (timed["seconds"] - timed["build_seconds"]) / 3)
    assert "200x150, float32: 3 iterations in " in run.stdout and "load average" in run.stdout


@pytest.mark.parametrize("name, op_type, kind", [
    ("Conv2D_3", "Conv2D", "convs"),
    ("gradients/IdentityN_3_grad/Conv2D", "Conv2D", "convs"),
    ("MatMul_7", "MatMul", "convs"),  # a Winograd product: made by conv3x3
    ("gradients/IdentityN_9_grad/sub_4", "Sub", "convs"),  # a Winograd transform's gradient
    ("conv1_1", "Cast", "casts"),
    ("gradients/input_bfloat16_grad/Cast", "Cast", "casts"),
    ("conv1_1_bfloat16", "Relu", "element-wise"),
    ("gradients/conv1_1_bfloat16_grad/ReluGrad", "ReluGrad", "element-wise"),
    ("gradients/avgpool1_bfloat16_grad/AvgPoolGrad", "AvgPoolGrad", "pooling"),
    ("MatMul_40", "MatMul", "costs"),  # a Gram matrix
    ("gradients/transpose_3_grad/transpose", "Transpose", "costs"),
    ("Adam/update_Variable/ApplyAdam", "ApplyAdam", "Adam"),
    ("adam/Sqrt", "Sqrt", "Adam"),  # Keras' Adam
    ("Variable/read", "Identity", "other"),
])
def test_profile_sorts_each_op_into_its_kind(name, op_type, kind):
    conv_ops = {"Conv2D_3", "IdentityN_3", "MatMul_7", "IdentityN_9"}
    assert bench_nst.profile_kind(name, op_type, conv_ops) == kind


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_profile_of_an_iteration_times_its_convs_and_casts_from_tensorflows_trace(
        precision, monkeypatch, tiny_vgg_path, notebook_path):
    """A 60x80 iteration of section 4 on the tiny VGG-19, profiled: convs take time in both,
    casts only in bfloat16 (the input's, the costs' layers' and their gradients')."""
    import nst_utils
    from nst_course import convs

    for setting in ("IMAGE_HEIGHT", "IMAGE_WIDTH", "CONV_PRECISION"):
        monkeypatch.setattr(nst_utils.CONFIG, setting, getattr(nst_utils.CONFIG, setting))
    monkeypatch.setattr(convs, "conv3x3", convs.conv3x3)  # recording_convs wraps it
    monkeypatch.setenv(convs.FORCE_BFLOAT16, "0")
    conv_ops = bench_nst.recording_convs()
    iteration = bench_nst.tf1_loop(tiny_vgg_path, 60, 80, str(notebook_path), precision)
    iteration()
    found = bench_nst.profiled(iteration, 2, conv_ops)
    iteration.close()
    seconds = found["op_seconds"]
    assert set(seconds) == set(bench_nst.PROFILE_KINDS)
    assert seconds["convs"] > 0 and seconds["costs"] > 0 and seconds["Adam"] > 0
    assert (seconds["casts"] > 0) == (precision == "bfloat16")
    assert sum(seconds.values()) == pytest.approx(sum(found["op_seconds_by_type"].values()))
