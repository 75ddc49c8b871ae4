"""grading/sandbox.py, the trust boundary: what a worker can send back, where it can write, what
it leaves running, and the limits the grader holds it to. Each task runs one cell, no calls."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from conftest import ROOT
from grading.confinement import OOM_SCORE_ADJ
from grading.protections import Protection, readable_by_others
from grading.sandbox import Sandbox
from grading.wire import WireError, decode_array, encode_array

TIME_LIMIT = 5


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(memory_limit_mb=2000) as running:
        yield running


def run_cell(sandbox, body, name="cell"):
    """Run `body` as the total_cost cell in a fresh worker; (records, ending, the folder of the
    files it left that a test reads: planted_here.txt, daemon.pid, uid, oom_score_adj,
    found.json)."""
    scratch = sandbox.scratch(name)
    source = f"# GRADED FUNCTION: total_cost\n{body}\ndef total_cost(J_content, J_style, " \
             f"alpha = 10, beta = 40):\n    return 0\n"
    records, ending = sandbox.run({"function": "total_cost", "source": source, "helpers": "",
                                   "calls": [], "memory_limit_mb": 2000}, scratch, TIME_LIMIT,
                                  keep=["planted_here.txt", "daemon.pid", "uid", "oom_score_adj",
                                        "found.json"])
    return records, ending, scratch / "kept"


def stages(records):
    return [record.stage for record in records if record.kind == "stage"]


def test_arrays_cross_as_float64_values_only():
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(decode_array(encode_array(value)), value)
    good = encode_array(value)
    for bad in [{**good, "dtype": "object"}, {**good, "shape": [2, 4]}, {**good, "shape": [-2, -3]},
                {**good, "shape": "2x3"}, {**good, "float64": "not base64!"},
                {"shape": [1 << 40], "float64": ""}, [1, 2, 3], "pickle"]:
        with pytest.raises(WireError):
            decode_array(bad)


def test_a_well_behaved_worker_reports_its_stages_and_exits(sandbox):
    records, ending, _ = run_cell(sandbox, "x = 1")
    assert stages(records) == ["cell", "loaded", "done"]
    assert ending["how"] == "exit" and ending["status"] == 0


def test_a_cell_that_uses_tf_keras_loads_it_though_the_zygote_left_keras_out(sandbox):
    """The zygote imports TensorFlow without Keras (it needs none); a student's cell may still
    use tf.keras, which then loads in its worker. Where the workers cannot read Python's own
    files (pyenv under /root, graded as root), the import fails, and every run says so."""
    body = """with tf.Graph().as_default(), tf.Session() as sess:
    assert sess.run(tf.keras.backend.sum(tf.constant([1.0, 2.0]))) == 3.0"""
    records, ending, _ = run_cell(sandbox, body)
    if sandbox.protections[Protection.PYTHON_READABLE]:
        assert stages(records) == ["cell", "loaded", "done"], records
        assert ending["how"] == "exit" and ending["status"] == 0
    else:
        assert "Keras cannot be imported" in records[-1].text, records
        assert f"not in force here: {Protection.PYTHON_READABLE.value}" in sandbox.protections_line()


def test_python_counts_as_readable_only_if_other_users_can_reach_and_read_it():
    top = Path(tempfile.mkdtemp())  # in /tmp, which every user may enter (pytest's is 0700)
    try:
        folder = top / "lib" / "python3"
        folder.mkdir(parents=True)
        module = folder / "os.py"
        module.write_text("")
        for path in (top, top / "lib", folder):
            path.chmod(0o755)
        module.chmod(0o644)
        assert readable_by_others(module)
        (top / "lib").chmod(0o700)  # as /root is
        assert not readable_by_others(module)
        (top / "lib").chmod(0o755)
        module.chmod(0o600)
        assert not readable_by_others(module)
    finally:
        shutil.rmtree(top)


PAGED_OUT = """import ctypes, os, shutil, tempfile
import numpy
from grading import zygote

def resident_file_kib():
    return int(open("/proc/self/status").read().split("RssFile:")[1].split()[0])

copy = shutil.copy(numpy._core._multiarray_umath.__file__, tempfile.mkdtemp() + "/copy.so")
with open(copy, "rb+") as written:
    os.fsync(written.fileno())
ctypes.CDLL(copy)  # a library no other process maps: its pages can be given back
mapped = 0
for line in open("/proc/self/maps"):
    fields = line.split()
    if fields[-1] == copy and "w" not in fields[1] and "r" in fields[1]:
        start, end = (int(address, 16) for address in fields[0].split("-"))
        ctypes.string_at(start, end - start)  # makes every page resident
        mapped += (end - start) // 1024
before = resident_file_kib()
zygote._page_out_libraries()
print(mapped, before - resident_file_kib())
shutil.rmtree(os.path.dirname(copy))"""


def test_the_zygote_gives_back_the_library_pages_its_start_touched():
    """After its start the zygote asks the kernel to reclaim its libraries' read-only pages,
    which workers fault back in as they need them. Tried on a copy of one library that no other
    process maps (the kernel keeps pages that another process maps too, such as TensorFlow's
    in this test run's other zygotes): nearly all its resident pages are given back."""
    started = subprocess.run([sys.executable, "-c", PAGED_OUT], cwd=ROOT, capture_output=True,
                             text=True, check=True)
    mapped, given_back = map(int, started.stdout.split()[-2:])
    print(f"{given_back} of the {mapped} KiB resident given back")
    assert mapped > 1000 and given_back > 0.8 * mapped


def test_worker_cannot_write_outside_its_scratch_folder(sandbox):
    outside = Path(tempfile.mkdtemp(prefix="world-writable-"))
    try:
        outside.chmod(0o777)
        body = f"""
for path in [{str(outside / "planted.py")!r}, "planted_here.txt"]:
    try:
        open(path, "w").write("x")
    except OSError:
        pass"""
        _, _, scratch = run_cell(sandbox, body)
        assert not (outside / "planted.py").exists()
        assert (scratch / "planted_here.txt").exists()
    finally:
        for path in outside.iterdir():
            path.unlink()
        outside.rmdir()


def test_nothing_the_worker_starts_outlives_it(sandbox):
    body = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open("daemon.pid", "w").write(str(os.getpid()))
        while True:
            time.sleep(0.1)
    os._exit(0)
time.sleep(1)"""
    _, _, scratch = run_cell(sandbox, body)
    pid = int((scratch / "daemon.pid").read_text())
    assert not psutil.pid_exists(pid)


def test_worker_cannot_stop_the_grader(sandbox):
    body = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
    run_cell(sandbox, body, "killer")
    records, ending, _ = run_cell(sandbox, "x = 1", "after")
    assert ending["how"] == "exit" and stages(records)[-1] == "done"


def test_a_call_blocked_inside_tensorflow_is_stopped_at_the_time_limit(sandbox):
    body = """
with tf.Session() as session:  # waits forever in TensorFlow's C++ queue code
    session.run(tf.queue.FIFOQueue(1, tf.float32).dequeue())"""
    _, ending, _ = run_cell(sandbox, body)
    assert ending["how"] == "time" and ending["stage"].stage == "cell"


def test_announcing_a_stage_again_does_not_restart_its_clock(sandbox):
    body = """
import os, threading, time
def claim_progress():
    while True:
        for fd in range(3, 20):
            try:
                os.write(fd, b'{"stage": "cell"}\\n')
            except OSError:
                pass
        time.sleep(0.5)
threading.Thread(target=claim_progress, daemon=True).start()
time.sleep(600)"""
    _, ending, _ = run_cell(sandbox, body)
    assert ending["how"] == "time" and ending["stage"].stage == "cell"


def test_announcing_the_next_stages_early_gains_no_more_than_the_budget(sandbox):
    """Each stage, even one announced early, has its own time; all of them together have the
    budget: the cell, loaded and done, each TIME_LIMIT, but twice TIME_LIMIT in all."""
    body = """
import os, time
for stage in (b"loaded", b"done"):  # each just before the last one's time is up
    time.sleep(TIME_LIMIT * 0.8)
    os.write(4, b'{"stage": "' + stage + b'"}\\n')
time.sleep(600)""".replace("TIME_LIMIT", str(TIME_LIMIT))
    started = time.monotonic()
    _, ending, _ = run_cell(sandbox, body)
    assert ending["how"] == "budget" and ending["stage"].stage == "done"
    assert time.monotonic() - started < 2 * TIME_LIMIT + 5


def test_memory_of_the_whole_process_tree_counts(sandbox):
    body = """
import os, time
os.fork()
hoard = b"x" * (1200 * 2**20)  # 1.2 GB in each of two processes: more than 2000 MB in all
time.sleep(30)"""
    _, ending, _ = run_cell(sandbox, body)
    assert ending["how"] == "memory"


def test_a_worker_is_what_the_kernel_kills_first_when_memory_runs_out(sandbox):
    """Where the memory cgroups are out of reach (a container), a container's limit can still be
    met: the kernel's out-of-memory killer must then take the worker, not the grader."""
    body = """
try:  # as another uid the worker cannot take it back
    open('/proc/self/oom_score_adj', 'w').write('0')
except OSError:
    pass
open('oom_score_adj', 'w').write(open('/proc/self/oom_score_adj').read())"""
    _, _, scratch = run_cell(sandbox, body)
    kept = int((scratch / "oom_score_adj").read_text())
    assert kept == OOM_SCORE_ADJ == 1000 if os.geteuid() == 0 else kept in (0, OOM_SCORE_ADJ)
    assert int(Path("/proc/self/oom_score_adj").read_text()) < OOM_SCORE_ADJ


def test_each_worker_runs_as_a_user_of_its_own_when_the_grader_is_root(sandbox):
    uids = []
    for name in ("first", "second"):
        _, _, scratch = run_cell(sandbox, "import os\nopen('uid', 'w').write(str(os.getuid()))",
                                 name)
        uids.append(int((scratch / "uid").read_text()))
    if os.geteuid() == 0:
        assert 0 not in uids and len(set(uids)) == 2, uids
    else:
        assert uids == [os.getuid()] * 2
