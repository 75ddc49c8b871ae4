"""benchmarks/bench_nst.py: the FLOP count it reports, and a quick run end to end."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_nst  # noqa: E402


def test_flop_count_of_one_iteration_at_300x400_is_forward_and_backward_to_conv5_1():
    forward = 87.1  # GFLOP of VGG-19's convs up to conv5_1 on a 300x400 image
    assert bench_nst.iteration_gflop(300, 400, (64, 128, 256, 512, 512)) == pytest.approx(
        2 * forward, rel=1e-3)


@pytest.mark.slow
def test_quick_benchmark_reports_both_loops_side_by_side(tmp_path):
    report = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_nst.py"), "--quick",
                          "--iterations", "2", "--json", str(report)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(report.read_text())
    assert results["size"] == "200x150"
    for key in ("tf1_seconds_per_iteration", "tf2_peer_seconds_per_iteration",
                "matmul_gflops_tensorflow", "matmul_gflops_numpy",
                "tf1_peak_rss_mb", "peer_peak_rss_mb"):
        assert results[key] > 0, key
    assert results["ratio_tf1_to_peer"] == pytest.approx(
        results["tf1_seconds_per_iteration"] / results["tf2_peer_seconds_per_iteration"])
    assert "TF1 loop" in run.stdout and "TF2 peer" in run.stdout


def test_benchmark_refuses_fewer_than_ten_timed_iterations_at_full_size():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_nst.py"),
                          "--iterations", "3"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "at least 10 timed iterations" in run.stderr
