"""In `grade-all`, one submission cannot take a classmate's work or cost a classmate anything:
a thief graded after its victim in the same run finds no trace of the victim's code in its
memory, and a submission that grabs every process it can does not make a classmate's functions
fail. Each class is graded by the README's command in a copy of the project."""
import os
import secrets

import pytest

from conftest import ROOT
from grading.notebook import GRADED_FUNCTIONS
from grading.sandbox import Sandbox
from submissions import cell, make_release, project_copy, with_graded_cell_replaced
from test_grading_robustness import grade_all

# Searches its own memory (Python's objects, and every readable mapping) for a graded cell that
# is not its own, and runs it: full marks for compute_content_cost if any victim's source is found.
THIEF = cell("compute_content_cost", r"""
import gc, json, os

MARK = "# GRADED FUNCTION: compute_content_cost"

def candidates(text):
    yield text
    try:  # as a JSON string, the way a task travels
        yield json.loads('"' + text.split('"')[0] + '"')
    except ValueError:
        pass

def sources_in_memory():
    for value in gc.get_objects():
        if isinstance(value, str) and MARK in value:
            yield value
    yield from heap_scan()
    try:
        maps = open("/proc/self/maps").read().splitlines()
        memory = open("/proc/self/mem", "rb")
    except OSError:
        return
    for line in maps:
        addresses, permissions = line.split()[:2]
        if not permissions.startswith("r"):
            continue
        start, end = (int(address, 16) for address in addresses.split("-"))
        try:
            memory.seek(start)
            chunk = memory.read(min(end - start, 1 << 28))
        except (OSError, ValueError, OverflowError):
            continue
        position = chunk.find(MARK.encode())
        while position >= 0:
            text = chunk[position:position + 3000].split(b"\0")[0].decode("utf-8", "replace")
            yield from candidates(text)
            position = chunk.find(MARK.encode(), position + 1)

def heap_scan():
    # process_vm_readv on itself: reads any mapped address, fails (no crash) on the others
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]
    size = 1 << 20
    buffer = ctypes.create_string_buffer(size)
    anchors = {id(MARK), ctypes.addressof(ctypes.create_string_buffer(4096))}  # arenas, heap
    addresses = sorted({address for anchor in anchors
                        for address in range(max((anchor & ~(size - 1)) - (1 << 30), size),
                                             (anchor & ~(size - 1)) + (1 << 30), size)})
    for address in addresses:
        local, remote = iovec(ctypes.addressof(buffer), size), iovec(address, size)
        got = libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got <= 0:
            continue
        chunk = buffer.raw[:got]
        position = chunk.find(MARK.encode())
        while position >= 0:
            text = chunk[position:position + 3000].split(b"\0")[0].decode("utf-8", "replace")
            yield from candidates(text)
            position = chunk.find(MARK.encode(), position + 1)

for source in sources_in_memory():
    if "reduce_sum" in source and "sources_in_memory" not in source:
        try:
            exec(source)
            break
        except Exception:
            pass
else:
    def compute_content_cost(a_C, a_G):
        return tf.constant(0.0)
""")

# Takes every process and thread it can, and holds them while its classmates are graded.
GRABBER = cell("total_cost", """
import os, threading, time
held = []
try:
    while len(held) < 100000:
        thread = threading.Thread(target=time.sleep, args=(25,), daemon=True)
        thread.start()
        held.append(thread)
except (RuntimeError, MemoryError, OSError):
    pass
while True:
    try:
        if os.fork() == 0:
            time.sleep(25)
            os._exit(0)
    except OSError:
        break
time.sleep(25)

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    return alpha * J_content + beta * J_style
""")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return project_copy(tmp_path_factory.mktemp("project"))


def test_a_thief_graded_after_its_victim_finds_nothing_of_the_victims_code(tmp_path, project):
    folder = tmp_path / "class"
    folder.mkdir()
    victim = folder / "a_victim.ipynb"
    victim.write_bytes((ROOT / "nst_assignment.ipynb").read_bytes())
    victim.chmod(0o600)
    release = make_release(tmp_path / "release.ipynb")
    with_graded_cell_replaced("compute_content_cost", THIEF, folder / "b_thief.ipynb", release)
    rows, _ = grade_all(folder, tmp_path / "grades.csv", "--jobs", "1", project=project)
    assert rows["a_victim.ipynb"]["score"] == "100", rows["a_victim.ipynb"]
    assert rows["b_thief.ipynb"]["compute_content_cost"] == "0", rows["b_thief.ipynb"]
    assert "got 0., expected" in rows["b_thief.ipynb"]["errors"]


def test_a_submission_grabbing_every_process_costs_its_classmates_nothing(tmp_path, project):
    if os.geteuid() != 0:
        pytest.skip("needs the grader to run as root: only then does each worker get a user "
                    "of its own, and so a process limit of its own (docs/threat-model.md)")
    folder = tmp_path / "class"
    folder.mkdir()
    with_graded_cell_replaced("total_cost", GRABBER, folder / "grabber.ipynb")
    for name in ("classmate_1", "classmate_2", "classmate_3"):
        (folder / f"{name}.ipynb").write_bytes((ROOT / "nst_assignment.ipynb").read_bytes())
    rows, _ = grade_all(folder, tmp_path / "grades.csv", "--jobs", "2", project=project)
    for name in ("classmate_1", "classmate_2", "classmate_3"):
        assert rows[f"{name}.ipynb"]["score"] == "100", rows[f"{name}.ipynb"]
    grabber = rows["grabber.ipynb"]
    assert [f for f in GRADED_FUNCTIONS if grabber[f] == "0"] == ["total_cost"], grabber


def process_memory(pid):
    """Every readable byte of process `pid`'s memory (as its parent or root may read it)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as memory:
        for line in maps:
            addresses, permissions = line.split()[:2]
            start, end = (int(address, 16) for address in addresses.split("-"))
            if permissions.startswith("r") and end - start < 1 << 30:
                try:
                    memory.seek(start)
                    chunks.append(memory.read(end - start))
                except (OSError, ValueError, OverflowError):
                    pass
    return b"".join(chunks)


def test_the_process_workers_are_forked_from_never_holds_a_submissions_code():
    """Workers are forked from the zygote: whatever it holds, a later worker could read in its own
    memory. Right after a worker ran a cell (when the old design still had 8 copies of it), the
    zygote's memory has no trace of it."""
    token = f"victim_{secrets.token_hex(8)}"
    source = cell("compute_content_cost", f"""
def compute_content_cost(a_C, a_G):
    {token} = tf.reduce_sum(tf.square(a_C - a_G))
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    return {token} / (4 * n_H * n_W * n_C)""")
    with Sandbox() as sandbox:
        records, ending = sandbox.run({"function": "compute_content_cost", "source": source,
                                       "helpers": "", "calls": [], "memory_limit_mb": 4096},
                                      sandbox.scratch("victim"), 60)
        assert ending["how"] == "exit" and records[-1].stage == "done", (records, ending)
        memory = process_memory(sandbox.zygote.pid)
    assert b"grading/worker.py" in memory  # the scan reads what the zygote holds
    assert token.encode() not in memory
