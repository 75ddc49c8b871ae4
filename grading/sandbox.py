"""The trust boundary: a submission's code runs only in worker processes started from here.

    grader (trusted: pytest, the gradebook)
      |  Sandbox.run(task)           JSON request, one line
      v
    zygote  (`python -m grading.sandbox`, our code only; TensorFlow imported once)
      |  fork, confine, supervise    limits: wall clock per stage, memory, the whole process tree
      v
    worker  (untrusted: runs one graded cell and grading.probes' calls of its function)
            writes JSON lines to a pipe; the zygote relays them once the worker's tree is gone

The worker is confined before any student code runs: a session of its own, rlimits (address
space, file size, core dumps), an unprivileged user when the grader is root, no new privileges,
and, where the kernel has Landlock (Linux >= 5.13), writes only inside its scratch folder, no TCP,
no signals to processes outside it. The zygote is a child subreaper (Linux), so whatever the
worker starts, double-forked or not, stays in its tree and is killed when the function's grading
ends. Nothing comes back but JSON: strings, numbers and float64 arrays as base64 bytes, decoded
and checked for shape and size here (decode_array) before the grader looks at them.
"""
import base64
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
UNPRIVILEGED_UID = 65534  # "nobody": workers run as this user when the grader is root
MAX_RESULT_BYTES = 64 << 20  # what one worker may send back
MAX_ARRAY_ELEMENTS = 4 << 20
MAX_FILE_BYTES = 256 << 20  # the largest file a worker may write
POLL_SECONDS = 0.05
GRADER_ERROR = 70  # a worker's exit status when our own code in it failed


# ----- the wire format: the only thing that crosses from a worker to the grader -----

def encode_array(value):
    array = np.asarray(value, dtype=np.float64)
    return {"shape": list(array.shape), "float64": base64.b64encode(array.tobytes()).decode()}


def decode_array(data):
    """A float64 array from encode_array's output; ValueError unless it is exactly that."""
    if not isinstance(data, dict) or set(data) != {"shape", "float64"}:
        raise ValueError("not an encoded array")
    shape, text = data["shape"], data["float64"]
    if (not isinstance(shape, list) or len(shape) > 8 or not isinstance(text, str)
            or not all(type(n) is int and 0 <= n <= MAX_ARRAY_ELEMENTS for n in shape)
            or int(np.prod(shape)) > MAX_ARRAY_ELEMENTS):
        raise ValueError("bad array shape")
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 8 * int(np.prod(shape)):
        raise ValueError("array size does not match its shape")
    return np.frombuffer(raw, dtype=np.float64).reshape(shape).copy()


# ----- the grader's side -----

class Sandbox:
    """Runs tasks in confined workers through one zygote. Use as a context manager, or start()
    early (the zygote imports TensorFlow meanwhile) and close(): then the zygote and everything
    it started are gone."""

    def __init__(self, memory_limit_mb=4096):
        self.memory_limit_mb = memory_limit_mb
        self.zygote = self.folder = None
        self.ready = False

    def start(self):
        self.folder = Path(tempfile.mkdtemp(prefix="nst-sandbox-"))
        os.chmod(self.folder, 0o711)  # workers (another user when we are root) reach their own
        self.zygote = subprocess.Popen(
            [sys.executable, "-m", "grading.sandbox", str(self.memory_limit_mb)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True)
        return self

    def __enter__(self):
        return self.start()

    def _wait_until_ready(self):
        if not self.ready:
            if self.zygote.stdout.readline() != b"ready\n":
                raise RuntimeError("the grading sandbox could not start (python -m "
                                   "grading.sandbox): check that TensorFlow imports")
            self.ready = True

    def scratch(self, name):
        """A new, empty folder for one worker, its own (it may write only there)."""
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.folder))
        if os.geteuid() == 0:
            os.chown(folder, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        return folder

    def run(self, task):
        """Run `task` (a dict for grading.probes, with 'scratch' and 'time_limit') in a worker.

        Returns (records, ending): the JSON objects the worker wrote, and how it ended:
        {"how": "exit" | "signal" | "time" | "budget" | "memory" | "output", "status": int,
        "stage": the last stage it reported}. "time": one stage (the cell, a call) took longer
        than task['time_limit']; "budget": all of them together took longer than they may.
        """
        self._wait_until_ready()
        self.zygote.stdin.write(json.dumps(task).encode() + b"\n")
        self.zygote.stdin.flush()
        line = self.zygote.stdout.readline(MAX_RESULT_BYTES * 2)
        if not line.endswith(b"\n"):
            raise RuntimeError("the grading sandbox stopped while running a worker")
        reply = json.loads(line)
        return reply["records"], reply["ending"]

    def close(self):
        """End the zygote and everything it started; remove the scratch folders."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self.zygote is None:
            return
        self.zygote.stdin.close()
        try:
            self.zygote.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.zygote.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.zygote.wait()
        self.zygote = None

    def __exit__(self, *exc):
        self.close()


# ----- the zygote -----

def zygote_main(memory_limit_mb):
    """Import what workers need once, then serve tasks from stdin, one at a time."""
    from grading import probes  # imports TensorFlow and nst_utils
    probes.warm_up()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        task = json.loads(line)
        records, ending = supervise(task, memory_limit_mb << 20)
        out.write(json.dumps({"records": records, "ending": ending}).encode() + b"\n")
        out.flush()
    kill_descendants()
    os._exit(0)  # no interpreter teardown: TensorFlow's takes seconds


def supervise(task, memory_limit):
    """Fork a worker for `task`, hold it to its limits, end its whole tree; what it said."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            confine(Path(task["scratch"]), write_end, memory_limit)
            from grading import probes
            probes.run_task(task, lambda record: _send(write_end, record))
        except BaseException:
            traceback.print_exc()  # into the worker's log
            os._exit(GRADER_ERROR)
        os._exit(0)
    os.close(write_end)
    records, buffer, total = [], b"", 0
    started = stage_started = time.monotonic()
    budget = min(task["time_limit"] * (len(task["calls"]) + 2),  # the cell, each call, setup
                 task.get("seconds_left", float("inf")))  # and what the submission has left
    ending, status, pipe_open = None, None, True
    while ending is None:
        if pipe_open and select.select([read_end], [], [], POLL_SECONDS)[0]:
            chunk = os.read(read_end, 1 << 20)
            total += len(chunk)
            pipe_open = bool(chunk)
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                record = _parse(line)
                records.append(record)
                if isinstance(record, dict) and "stage" in record:
                    stage_started = time.monotonic()
        elif not pipe_open:
            time.sleep(POLL_SECONDS)
        finished, code = os.waitpid(pid, os.WNOHANG)
        if finished:
            status = os.waitstatus_to_exitcode(code)
            ending = "exit" if status >= 0 else "signal"
        elif total > MAX_RESULT_BYTES:
            ending = "output"
        elif _tree_rss() > memory_limit:
            ending = "memory"
        elif time.monotonic() - stage_started > task["time_limit"]:
            ending = "time"
        elif time.monotonic() - started > budget:
            ending = "budget"
    kill_descendants()
    # what it wrote before it ended (every writer is gone: EOF comes at once, unless something
    # escaped the kill where there is no subreaper, so wait only briefly for more)
    while pipe_open and total <= MAX_RESULT_BYTES and select.select([read_end], [], [], 1)[0]:
        chunk = os.read(read_end, 1 << 20)
        total += len(chunk)
        buffer, pipe_open = buffer + chunk, bool(chunk)
    records += [_parse(line) for line in buffer.split(b"\n") if line]
    os.close(read_end)
    stages = [r for r in records if isinstance(r, dict) and "stage" in r]
    return records, {"how": ending, "status": status, "stage": stages[-1] if stages else None}


def _parse(line):
    try:
        return json.loads(line)
    except ValueError:
        return None  # the grader counts it as a malformed record


def _send(fd, record):
    data = json.dumps(record).encode() + b"\n"
    while data:
        data = data[os.write(fd, data):]


def _tree_rss():
    """Resident memory of every process below the zygote (only the current worker's tree)."""
    import psutil
    total = 0
    for process in psutil.Process().children(recursive=True):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_descendants():
    """SIGKILL everything below this process until nothing is left, reaping as we go. As a
    subreaper, orphans (double-forked, setsid) are our children too; elsewhere only the tree
    psutil still sees is reached."""
    import psutil
    for _ in range(1000):
        children = psutil.Process().children(recursive=True)
        for process in children:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not children:
            return
        time.sleep(0.01)


# ----- confining a worker (runs in the forked child, before any student code) -----

PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 38, 36


def _prctl(option, value):
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def confine(scratch, result_fd, memory_limit):
    os.setsid()
    log = os.open(scratch / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for target, source in ((0, os.open(os.devnull, os.O_RDONLY)), (1, log), (2, log)):
        os.dup2(source, target)
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 1 << 16)
    address_space = _virtual_memory() + memory_limit
    for limit, value in ((resource.RLIMIT_AS, address_space), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_FSIZE, MAX_FILE_BYTES)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):  # not enforced on this OS (macOS: RLIMIT_AS)
            pass
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(UNPRIVILEGED_UID)
        os.setuid(UNPRIVILEGED_UID)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    landlock_writes_only_beneath(scratch)
    os.chdir(scratch)
    os.environ.update(HOME=str(scratch), TMPDIR=str(scratch))


def _virtual_memory():
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmSize:")[1].split()[0]) * 1024
    except (OSError, IndexError):
        return 0


# Landlock: an unprivileged Linux sandbox (landlock.io). Rights are named by bit; a right the
# ruleset "handles" is denied except where a rule allows it. Reads and execution are not handled.
_LANDLOCK_WRITE_FILE, _LANDLOCK_TRUNCATE = 1 << 1, 1 << 14
_LANDLOCK_FS_WRITES = {  # ABI version: the write rights it added (remove, make, refer, ...)
    1: _LANDLOCK_WRITE_FILE | sum(1 << bit for bit in range(4, 13)), 2: 1 << 13,
    3: _LANDLOCK_TRUNCATE, 5: 1 << 15}
_LANDLOCK_NET_TCP, _LANDLOCK_SCOPES = 0b11, 0b11  # bind+connect (ABI 4); unix+signals (ABI 6)
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446  # the same on x86_64 and arm64


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi():
    """The kernel's Landlock ABI version, 0 where there is none."""
    if not sys.platform.startswith("linux"):
        return 0
    version = ctypes.CDLL(None, use_errno=True).syscall(_SYS_CREATE, None, 0, 1)
    return max(version, 0)


def landlock_writes_only_beneath(folder):
    """From now on this process and its children may write only beneath `folder` (and to
    /dev/null), open no TCP connections and signal no process outside. No-op without Landlock."""
    abi = landlock_abi()
    if abi == 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    writes = sum(bits for version, bits in _LANDLOCK_FS_WRITES.items() if abi >= version)
    attr = _RulesetAttr(writes, _LANDLOCK_NET_TCP if abi >= 4 else 0,
                        _LANDLOCK_SCOPES if abi >= 6 else 0)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    devnull = _LANDLOCK_WRITE_FILE | (_LANDLOCK_TRUNCATE if abi >= 3 else 0)
    for path, allowed in ((folder, writes), (os.devnull, devnull)):
        fd = os.open(path, os.O_PATH)
        rule = _PathBeneath(allowed, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        os.close(fd)
    if libc.syscall(_SYS_RESTRICT, ruleset, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)


if __name__ == "__main__":
    zygote_main(int(sys.argv[1]))
