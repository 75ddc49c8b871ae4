"""Grading leaves the machine as it found it: each attack takes one resource (memory outside the
address space, System V shared memory, disk, threads, huge pictures, the network, CPU beside a
classmate), is graded by the README's command in a copy of the project, and must fail only the
attacked function, with a sentence naming the resource, leaving nothing behind: no process, no
System V segment, no scratch file, the machine's shared memory back where it was.

These defences are the kernel's, used when the grader is root (grading/limits.py); as another
user each test says it cannot run here rather than pass.
"""
import concurrent.futures
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT
from grading.notebook import GRADED_FUNCTIONS
from grading.protections import Protection
from submissions import MODEL_NN, cell, project_copy, with_graded_cell_replaced
from test_grading_attacks import grade_in, read_junit
from test_grading_robustness import grade_all

MEMORY_LIMIT = "1024"  # MB, for these gradings: the attacks below take more
RESOURCE_ATTACKS = {  # name: (function, cell, words of the reason)
    "memory_in_memfds": ("gram_matrix", cell("gram_matrix", """
import os
hoard = []
for i in range(10):  # 2.5 GB, none of it mapped: no address space, no resident memory
    fd = os.memfd_create(f"hoard{i}")
    for _ in range(250):
        os.write(fd, b"x" * (1 << 20))
    hoard.append(fd)

def gram_matrix(A):
    return tf.matmul(A, tf.transpose(A))"""), "used more than 1024 MB of memory"),
    "system_v_segments": ("compute_content_cost", cell("compute_content_cost", """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmdt.argtypes = [ctypes.c_void_p]
for _ in range(4):  # 1 GiB that would outlive the worker; each detached once filled, so that
    segment = libc.shmget(0, 256 << 20, 0o1600)  # the address space limit never stops it
    address = libc.shmat(segment, None, 0)
    ctypes.memset(address, 1, 256 << 20)
    libc.shmdt(address)

def compute_content_cost(a_C, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    return tf.reduce_sum(tf.square(a_C - a_G)) / (4 * n_H * n_W * n_C)"""),
        "used more than 1024 MB of memory"),
    "fills_the_disk": ("compute_layer_style_cost", cell("compute_layer_style_cost", """
import time
for i in range(15):  # 1.5 GB in files of 100 MB, each under the per-file limit
    try:
        with open(f"junk{i}", "wb") as junk:
            for _ in range(100):
                junk.write(b"x" * (1 << 20))
    except OSError:
        pass
time.sleep(5)

def compute_layer_style_cost(a_S, a_G):
    return tf.constant(0.0)"""), "wrote more than the 512 MB of files"),
    "three_thousand_threads": ("total_cost", cell("total_cost", """
import threading, time
threading.stack_size(1 << 16)  # small stacks: threads, not address space, run out
threads = []
for _ in range(3001):
    try:
        thread = threading.Thread(target=time.sleep, args=(20,), daemon=True)
        thread.start()
        threads.append(thread)
    except RuntimeError:
        break

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    return alpha * J_content + beta * J_style"""),
        "tried to run more than the 512 processes and threads"),
    "huge_pictures": ("model_nn", cell("model_nn", MODEL_NN.replace(
        "    return generated_image", """    from PIL import Image
    huge = Image.new("RGB", (7746, 7746), "white")  # 60 megapixels of one colour: a small file
    for i in range(0, num_iterations, 20):
        huge.save(CONFIG.OUTPUT_DIR + str(i) + ".png")
    return generated_image""")), "larger than a picture of"),
    "udp_to_itself": ("total_cost", cell("total_cost", """
import socket

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    channel = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    channel.bind(("127.0.0.1", 0))
    channel.sendto(b"answers", channel.getsockname())
    channel.settimeout(2)
    channel.recv(16)  # a classmate's worker could be listening instead
    return alpha * J_content + beta * J_style"""), "raised PermissionError"),  # no socket at all
}


def system_v_segments():
    with open("/proc/sysvipc/shm") as table:
        return set(table.read().splitlines()[1:])


def shared_memory_bytes():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    return 0


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("cannot run here: these limits are the kernel's (namespaces, cgroups, "
                    "tmpfs), used only when the grader runs as root (docs/threat-model.md)")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """{attack: how grading it went}, two at a time, with what the machine had before/after."""
    needs_root()
    project = project_copy(tmp_path_factory.mktemp("project"))
    temporary = Path(tempfile.mkdtemp(prefix="resource-tmp-"))
    temporary.chmod(0o711)
    submissions = tmp_path_factory.mktemp("attacks")
    segments, shared = system_v_segments(), shared_memory_bytes()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(grade_in, project, with_graded_cell_replaced(
            function, source, submissions / f"{name}.ipynb"), submissions / f"{name}.xml",
            temporary, f"--memory-limit={MEMORY_LIMIT}")
            for name, (function, source, _) in RESOURCE_ATTACKS.items()}
        runs = {name: future.result() for name, future in futures.items()}
    time.sleep(1)
    yield {"runs": runs, "project": project, "temporary": temporary,
           "segments_before": segments, "segments_after": system_v_segments(),
           "shared_before": shared, "shared_after": shared_memory_bytes(),
           "left_in_temporary": [str(p) for p in temporary.rglob("*")]}
    shutil.rmtree(temporary, ignore_errors=True)


@pytest.mark.parametrize("attack", RESOURCE_ATTACKS)
def test_taking_a_resource_fails_only_the_attacked_function_saying_which(graded, attack):
    run = graded["runs"][attack]
    function, _, words = RESOURCE_ATTACKS[attack]
    results, _ = read_junit(run["report"])
    assert [name for name, reason in results.items() if reason is not None] == [function], results
    assert words in results[function], results[function]
    assert "sandbox protections in force" in run["stdout"], run["stdout"][-600:]
    missing = run["stdout"].split("not in force here: ")[1].split(" (docs/threat-model.md)")[0]
    assert missing in ("none", Protection.PYTHON_READABLE.value), missing  # every kernel mechanism is in force


def test_nothing_is_left_behind(graded):
    assert graded["segments_after"] <= graded["segments_before"]
    assert graded["left_in_temporary"] == []
    assert graded["shared_after"] < graded["shared_before"] + (64 << 20)
    ours = [str(graded["project"]), str(graded["temporary"])]
    strays = [p.info for p in psutil.process_iter(["pid", "cmdline", "cwd"])
              if any((p.info["cwd"] or "").startswith(folder) for folder in ours)]
    assert strays == []


SPINNER = cell("compute_content_cost", """
import os
for _ in range(7):
    if os.fork() == 0:
        break
while True:  # eight busy processes
    pass""")


def test_a_busy_submission_is_held_to_one_cpu_and_fails_only_itself(tmp_path):
    """Eight busy processes in one function, graded beside a classmate: the spinner's function
    fails for its time, the classmate gets 100, and the run says each worker had a CPU group of
    its own. (How much the classmate is slowed is timing, measured and printed here, judged in
    the closing notes, not asserted: these machines are too noisy for a timed test.)"""
    needs_root()
    project = project_copy(tmp_path / "project")
    alone, beside = tmp_path / "alone", tmp_path / "beside"
    for folder in (alone, beside):
        folder.mkdir()
        (folder / "classmate.ipynb").write_bytes((ROOT / "nst_assignment.ipynb").read_bytes())
    with_graded_cell_replaced("compute_content_cost", SPINNER, beside / "spinner.ipynb")
    rows_alone, _ = grade_all(alone, tmp_path / "alone.csv", "--jobs", "2", project=project)
    rows, printed = grade_all(beside, tmp_path / "beside.csv", "--jobs", "2", project=project)
    assert Protection.CGROUP.value in printed.split("not in force")[0], printed
    assert rows["classmate.ipynb"]["score"] == "100", rows
    spinner = rows["spinner.ipynb"]
    assert [f for f in GRADED_FUNCTIONS if spinner[f] == "0"] == ["compute_content_cost"], \
        spinner
    assert "did not finish within" in spinner["errors"], spinner
    print(f"classmate graded alone in {rows_alone['classmate.ipynb']['seconds']} s, beside the "
          f"spinner in {rows['classmate.ipynb']['seconds']} s")
