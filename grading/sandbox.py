"""The trust boundary: a submission's code runs only in worker processes started from here.

    grader  (trusted: pytest, grade-all, Gradescope; never imports TensorFlow)
      |  Sandbox.run(task, ...)   a public request (limits, scratch folder) plus two new pipes,
      |                           passed over a Unix socket; the task itself goes down a pipe
      v
    zygote  (`python -m grading.sandbox`: our code only, TensorFlow imported once; it never
      |      sees a task, a result or a reference, so a worker forked from it inherits none)
      |  fork
      v
    supervisor  (one per task: a child subreaper that holds the worker to its limits)
      |  fork, confine
      v
    worker  (untrusted: reads its own task from its pipe, runs one graded cell and its calls,
             grading/worker.py; sends JSON records, grading/wire.py)

A worker is confined before it reads its task: a session of its own, a clean environment, rlimits
(address space, file size, processes, no core dumps), its own unprivileged user when the grader
is root (a different uid for every worker, so one submission's processes cannot use up
another's), a new session keyring (grading/keyring.py), no new privileges, and, where the kernel
has Landlock (Linux >= 5.13): reads only of what running a graded cell needs (Python, the
installed packages, nst_utils.py, a few system files), writes only inside its scratch folder, no
TCP, no signals to processes outside it; last, a seccomp filter of the system calls it may make
(grading/syscall_filter.py). The supervisor ends the worker's whole tree (double-forked or not:
as a subreaper it inherits the orphans) when the task is done or over a limit: the wall clock per
stage (each of the task's stages once, in order: StageClock) and in all, and the resident memory
of the tree. Then it sends the grader the worker's valid records and how it
ended. The trusted reference run of model_nn (grading/reference_run.py) is a zygote child too,
unconfined, sending straight to the grader.
"""
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from grading import keyring, limits, pictures, syscall_filter, wire

ROOT = Path(__file__).resolve().parent.parent
WORKER_UID_BASE = 1_500_000_000  # + the supervisor's pid: a uid of its own for every worker
FALLBACK_UID = 65534  # "nobody", where such uids cannot be used (some containers)
MAX_FILE_BYTES = 256 << 20  # the largest file a worker may write
POLL_SECONDS = 0.05
OOM_SCORE_ADJ = 1000  # a worker's: the kernel's out-of-memory killer picks it before all else
GRADER_ERROR = 70  # a worker's exit status when our own code in it failed
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                    "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def clean_environment():
    """What the zygote (and so every worker) gets of the grader's environment: nothing secret;
    no GPU (grading runs on the CPU, like the references, and CUDA never starts in the zygote,
    which forks)."""
    kept = {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}
    return {"PATH": os.defpath, "LANG": "C.UTF-8", **kept, "HOME": "/nonexistent",
            "CUDA_VISIBLE_DEVICES": ""}


# ----- the grader's side -----

class Sandbox:
    """Runs tasks in confined workers through one zygote; safe to use from several threads. Use as
    a context manager, or start() early (the zygote imports TensorFlow meanwhile) and close():
    then the zygote and everything it started are gone."""

    def __init__(self, memory_limit_mb=4096):
        self.memory_limit_mb = memory_limit_mb
        self.zygote = self.folder = self.socket = None
        self.ready, self.protections = False, {}
        self.lock = threading.Lock()

    def start(self):
        parent = Path(tempfile.gettempdir())
        if os.geteuid() == 0 and not _others_can_enter(parent):
            parent = Path("/tmp")  # workers, other users, must be able to reach their folders
        self.folder = Path(tempfile.mkdtemp(prefix="nst-sandbox-", dir=parent))
        os.chmod(self.folder, 0o711)  # each worker reaches its own folder, lists none
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.zygote = subprocess.Popen(
            [sys.executable, "-m", "grading.sandbox", str(theirs.fileno())],
            cwd=ROOT, env=clean_environment(), pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        theirs.close()
        self.socket = ours
        return self

    def __enter__(self):
        return self.start()

    def _wait_until_ready(self):
        if not self.ready:
            message = self.socket.recv(1 << 16)
            if not message.startswith(b"ready "):
                raise RuntimeError("the grading sandbox could not start (python -m "
                                   "grading.sandbox): check that TensorFlow imports")
            self.protections = json.loads(message[6:])
            self.ready = True

    def protections_line(self):
        """'sandbox: in force: ...; not in force here: ...' (the kernel's mechanisms)."""
        with self.lock:
            self._wait_until_ready()
        used = [name for name, works in self.protections.items() if works]
        missing = [name for name, works in self.protections.items() if not works]
        return (f"sandbox protections in force: {', '.join(used) or 'none'}; not in force "
                f"here: {', '.join(missing) or 'none'} (README: the threat model)")

    def scratch(self, name):
        """A new, empty folder for one worker, its own (it may write only there)."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.folder))

    def _start(self, request, task):
        """Have the zygote fork for `request`; feed `task` to it; the read end of its report."""
        task_read, task_write = os.pipe()
        report_read, report_write = os.pipe()
        try:
            with self.lock:
                self._wait_until_ready()
                socket.send_fds(self.socket, [json.dumps(request).encode()],
                                [task_read, report_write])
        finally:
            os.close(task_read)
            os.close(report_write)
        threading.Thread(target=_write_and_close, args=(task_write, wire.dumps(task)),
                         daemon=True).start()
        return report_read

    def run(self, task, scratch, time_limit, seconds_left=None, keep=(), kind="worker"):
        """Run `task` in a worker writing only in `scratch`/work: a graded cell and its calls
        (grading.worker.run_task), or, with kind "pictures", the decoding of pictures
        (grading.pictures.decode_task); afterwards the files named in `keep` (paths relative to
        that folder) are copied to `scratch`/kept, regular files only, and the rest is gone.

        Returns (records, ending): the worker's valid wire.Records, and how it ended:
        {"how": "exit" | "signal" | "time" | "budget" | "memory" | "output" | "disk" |
        "processes", "status": int,
        "stage": its last stage Record or None}. "time": one stage (the cell, a call) took
        longer than `time_limit`; "budget": all of them together took longer than they may
        (`seconds_left` at most). The stages are the task's own, in order (StageClock).
        """
        calls = [call["id"] for call in task["calls"]]
        budget = time_limit * (len(calls) + 2)  # the cell, each call, setting up
        if seconds_left is not None:
            budget = min(budget, seconds_left)
        report = self._start({"kind": kind, "scratch": str(scratch), "time_limit": time_limit,
                              "budget": budget, "calls": calls,
                              "memory_limit": self.memory_limit_mb << 20,
                              "keep": ["worker.log", *keep]}, task)
        with os.fdopen(report, "rb") as lines:
            *records, last = [line for line in lines] or [b""]
        ending = wire.loads(last) if last.startswith(b'{"ending"') else None
        if ending is None:
            raise RuntimeError("the grading sandbox stopped while running a worker")
        records = [record for record in map(wire.parse_record, records) if record is not None]
        stage = ending["ending"]["stage"]
        return records, {**ending["ending"],
                         "stage": None if stage is None else wire.parse_record(stage)}

    def reference(self, task):
        """Start grading.reference_run for `task`; a file of the JSON lines it sends."""
        return os.fdopen(self._start({"kind": "reference"}, task), "rb")

    def close(self):
        """End the zygote and everything it started; remove the scratch folders."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self.zygote is None:
            return
        self.socket.close()  # the zygote ends its descendants, then itself
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


def _others_can_enter(folder):
    return all(os.stat(path).st_mode & 0o001 for path in [folder, *folder.resolve().parents])


def _write_and_close(fd, data):
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the worker ended before reading all of it
        pass
    finally:
        os.close(fd)


# ----- the zygote -----

MADV_PAGEOUT = 21  # Linux 5.4+
PROTECTIONS = {}  # in the zygote and its children: which kernel mechanisms work here
# Not a protection, but said with them: where Python lives in a folder other users cannot enter
# (pyenv under /root), a worker with a uid of its own can import only what the zygote imported.
PYTHON_READABLE = "python's own files readable by the workers"


def _readable_by_others(path):
    """Whether a user who neither owns `path` nor is in its group can reach and read it."""
    path = os.path.realpath(path)
    if not os.stat(path).st_mode & stat.S_IROTH:
        return False
    while (parent := os.path.dirname(path)) != path:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        path = parent
    return True


def _page_out_libraries():
    """Ask the kernel to reclaim this process's resident pages of the shared libraries' read-only
    mappings: TensorFlow's start touched most of them once, and workers fault back in only the
    ones they use. About 130 MiB less memory per grading; a hint, which kernels before 5.4
    ignore."""
    if not sys.platform.startswith("linux"):
        return
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) == 6 and ".so" in fields[5] and "w" not in fields[1]:
                start, end = (int(address, 16) for address in fields[0].split("-"))
                madvise(start, end - start, MADV_PAGEOUT)


def zygote_main(fd):
    """Import what workers need once, then fork a child for each request until the grader
    closes the socket; then end every descendant."""
    channel = socket.socket(fileno=fd)
    with contextlib.suppress(OSError):  # none of the grader's keys, for any descendant
        keyring.join_new_session_keyring()
    # TensorFlow's start imports all of Keras (and matplotlib) for Keras' own registrations,
    # which TF1's API never needs: kept out, that is 0.4-0.8 s of one CPU and 48 MB less per
    # grading. A cell that uses tf.keras still loads it, then.
    sys.modules["keras"] = None
    try:
        from grading import worker  # TensorFlow and nst_utils; no reference, no check
    finally:
        del sys.modules["keras"]
    worker.warm_up()
    pictures.warm_up()
    _page_out_libraries()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    PROTECTIONS.update(limits.available(), landlock=landlock_abi() > 0)
    PROTECTIONS[PYTHON_READABLE] = os.geteuid() != 0 or all(  # the standard library, packages
        _readable_by_others(sys.modules[name].__file__) for name in ("os", "numpy"))
    channel.send(b"ready " + json.dumps(PROTECTIONS).encode())
    children = set()
    while True:
        readable = select.select([channel], [], [], 1.0)[0]
        children = _reap_and_kill_strays(children)
        if not readable:
            continue
        message, fds, _, _ = socket.recv_fds(channel, 1 << 16, 2)
        if not message or len(fds) != 2:
            break
        pid = os.fork()
        if pid == 0:
            channel.close()
            _child(json.loads(message), *fds)
        for descriptor in fds:
            os.close(descriptor)
        children.add(pid)
    kill_descendants()
    limits.remove_groups(f"nst-{os.getpid()}-")  # of supervisors killed before they could
    os._exit(0)  # no interpreter teardown: TensorFlow's takes seconds


def _reap_and_kill_strays(children):
    """Reap ended children; kill any other child (an orphan of a supervisor that died)."""
    import psutil
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        children.discard(pid)
    for process in psutil.Process().children():
        if process.pid not in children:
            _kill(process.pid)
    return children


def _child(request, task_fd, report_fd):
    """In a fork of the zygote: a supervisor for a worker, or the trusted reference run."""
    try:
        if request["kind"] == "reference":
            from grading import reference_run
            reference_run.run(wire.loads(_read_all(task_fd)),
                              lambda record: _send(report_fd, record))
        else:
            _send(report_fd, {"ending": supervise(request, task_fd, report_fd)})
    except BaseException:
        traceback.print_exc()
        os._exit(GRADER_ERROR)
    os._exit(0)


def supervise(request, task_fd, report_fd):
    """Fork the worker, hold it to its limits, end its whole tree; forward its valid records to
    the grader; how it ended."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    scratch = Path(request["scratch"])
    work = scratch / "work"
    work.mkdir()
    scratch.chmod(0o711)  # the worker may pass through to its folder, nothing more
    uid = _worker_uid(work)
    if PROTECTIONS.get("private tmpfs for files"):
        limits.private_tmpfs(work, os.getuid() if uid is None else uid)
    cgroup = (limits.Cgroup(f"nst-{os.getppid()}-{os.getpid()}", request["memory_limit"])
              if PROTECTIONS.get("cgroup: memory, processes, one cpu") else None)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.close(report_fd)
            task_fd, write_end = confine(work, uid, task_fd, write_end, request["memory_limit"],
                                         cgroup)
            from grading import worker
            entry = pictures.decode_task if request["kind"] == "pictures" else worker.run_task
            entry(wire.loads(_read_all(task_fd)), lambda record: _send(write_end, record))
        except BaseException:
            traceback.print_exc()  # into the worker's log
            os._exit(GRADER_ERROR)
        os._exit(0)
    os.close(write_end)
    os.close(task_fd)
    try:
        ending = _watch(request, pid, read_end, report_fd, cgroup, work)
        if cgroup is not None and cgroup.out_of_memory():  # the kernel ended it for memory
            ending["how"] = "memory"
        elif cgroup is not None and cgroup.out_of_processes():  # a fork or thread was refused
            ending["how"] = "processes"
    finally:
        kill_descendants()
        if cgroup is not None:
            cgroup.remove()
    limits.copy_kept(work, scratch / "kept", request["keep"])
    return ending


class StageClock:
    """The supervisor's clock for one worker. The task's stages come in a known order (its cell,
    loaded, each of its calls, done); a stage record from the worker starts the next stage's
    time only if it names that next stage, so repeating a record, or one out of order, winds
    nothing back. No record moves the budget, counted from the task's start. A worker can still
    announce a stage early; then the budget is what bounds it."""

    def __init__(self, request):
        self.order = [("cell", None), ("loaded", None),
                      *(("call", call) for call in request["calls"]), ("done", None)]
        self.time_limit, self.budget = request["time_limit"], request["budget"]
        self.started = self.stage_started = time.monotonic()
        self.passed = 0  # stages begun
        self.stage = None  # the line of the last one

    def begins(self, record, line):
        """Whether `record` begins the next stage (then its time starts now)."""
        if self.passed < len(self.order) and (record.stage, record.call) == self.order[self.passed]:
            self.passed += 1
            self.stage, self.stage_started = line, time.monotonic()
            return True
        return False

    def over(self):
        """"time" or "budget" once a limit has passed, else None."""
        now = time.monotonic()
        if now - self.stage_started > self.time_limit:
            return "time"
        return "budget" if now - self.started > self.budget else None


def _watch(request, pid, read_end, report_fd, cgroup, work):
    """Relay the worker's valid records until it ends or passes a limit; how it ended."""
    clock, buffer, total = StageClock(request), b"", 0
    how, status, pipe_open = None, None, True
    while how is None:
        if pipe_open and select.select([read_end], [], [], POLL_SECONDS)[0]:
            chunk = os.read(read_end, 1 << 20)
            total += len(chunk)
            pipe_open = bool(chunk)
            *lines, buffer = (buffer + chunk).split(b"\n")
            _relay(lines, report_fd, clock)
        elif not pipe_open:
            time.sleep(POLL_SECONDS)
        finished, code = os.waitpid(pid, os.WNOHANG)
        if finished:
            status = os.waitstatus_to_exitcode(code)
            how = "exit" if status >= 0 else "signal"
        elif total > wire.MAX_LINE_BYTES:
            how = "output"
        elif cgroup is not None and cgroup.out_of_memory():
            how = "memory"
        elif cgroup is not None and cgroup.out_of_processes():
            how = "processes"
        elif PROTECTIONS.get("private tmpfs for files") and limits.disk_full(work):
            how = "disk"
        elif _tree_rss() > request["memory_limit"]:
            how = "memory"
        else:
            how = clock.over()
    kill_descendants()
    # what it wrote before it ended (every writer is gone: EOF comes at once, unless something
    # escaped the kill where there is no subreaper, so wait only briefly for more)
    while pipe_open and total <= wire.MAX_LINE_BYTES and select.select([read_end], [], [], 1)[0]:
        chunk = os.read(read_end, 1 << 20)
        total += len(chunk)
        buffer, pipe_open = buffer + chunk, bool(chunk)
    if total <= wire.MAX_LINE_BYTES:
        _relay(buffer.split(b"\n"), report_fd, clock)
    os.close(read_end)
    return {"how": how, "status": status,
            "stage": None if clock.stage is None else clock.stage.decode("utf-8", "replace")}


def _relay(lines, report_fd, clock):
    """Forward to the grader the valid records among `lines`: results and problems, and the
    stage records that begin the next stage."""
    for line in lines:
        record = wire.parse_record(line) if line else None
        if record is not None and (record.kind != "stage" or clock.begins(record, line)):
            _write(report_fd, line + b"\n")


def _send(fd, record):
    _write(fd, wire.dumps(record))


def _write(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _read_all(fd, limit=wire.MAX_LINE_BYTES):
    chunks, total = [], 0
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ValueError("task too large")
    os.close(fd)
    return b"".join(chunks)


def _tree_rss():
    """Resident memory of every process below this one (the worker's tree)."""
    import psutil
    total = 0
    for process in psutil.Process().children(recursive=True):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def kill_descendants():
    """SIGKILL everything below this process until nothing is left, reaping as we go. As a
    subreaper, orphans (double-forked, setsid) are our children too; elsewhere only the tree
    psutil still sees is reached."""
    import psutil
    for _ in range(1000):
        children = psutil.Process().children(recursive=True)
        for process in children:
            _kill(process.pid)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not children:
            return
        time.sleep(0.01)


# ----- confining a worker (runs in the forked child, before any submission code) -----

PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 38, 36


def _prctl(option, value):
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _worker_uid(scratch):
    """As root: a uid no other process has (the base plus this supervisor's pid), owning the
    worker's scratch folder; else None (the worker stays our user)."""
    if os.geteuid() != 0:
        return None
    for uid in (WORKER_UID_BASE + os.getpid(), FALLBACK_UID):
        try:
            os.chown(scratch, uid, uid)
            return uid
        except OSError:  # a user namespace that maps no such uid
            continue
    return None


def confine(scratch, uid, task_fd, result_fd, memory_limit, cgroup=None):
    """Confine this process (the worker) for good; its task and result pipes, renumbered 3, 4."""
    os.setsid()
    if cgroup is not None:
        cgroup.join()
    namespaces = ((limits.CLONE_NEWIPC if PROTECTIONS.get("ipc namespace") else 0)
                  | (limits.CLONE_NEWNET if PROTECTIONS.get("network namespace") else 0))
    if namespaces:
        limits.unshare(namespaces)
    log = os.open(scratch / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if uid is not None:
        os.fchown(log, uid, uid)
    null = os.open(os.devnull, os.O_RDONLY)
    # copies above every target first, so that no dup2 below overwrites a source
    null, log, task_fd, result_fd = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
                                     for fd in (null, log, task_fd, result_fd))
    for target, source in enumerate((null, log, log, task_fd, result_fd)):
        os.dup2(source, target)
    os.closerange(5, 1 << 16)
    rlimits = [(resource.RLIMIT_AS, _virtual_memory() + memory_limit), (resource.RLIMIT_CORE, 0),
               (resource.RLIMIT_FSIZE, MAX_FILE_BYTES)]
    if uid is not None:  # counted per uid: only a uid of its own makes it the worker's limit
        # a margin above the cgroup's pids.max, which counts only this worker's tree and says so
        rlimits.append((resource.RLIMIT_NPROC, limits.MAX_PROCESSES + 64))
    for limit, value in rlimits:
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):  # not enforced on this OS (macOS: RLIMIT_AS)
            pass
    try:  # where memory runs out (a container's limit), the kernel kills the worker first
        Path("/proc/self/oom_score_adj").write_text(str(OOM_SCORE_ADJ))
    except OSError:  # not Linux
        pass
    if PROTECTIONS.get("fresh session keyring"):
        keyring.join_new_session_keyring()  # as root: no keyring of its uid's is made
    ruleset = landlock_ruleset(scratch)  # opens the paths it allows while we still can
    calls = syscall_filter.prepare() if PROTECTIONS.get("seccomp filter") else None
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    landlock_restrict(ruleset)
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update(clean_environment(), HOME=str(scratch), TMPDIR=str(scratch))
    syscall_filter.install(calls)  # last: from here on, only the calls it allows
    return 3, 4


def _virtual_memory():
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmSize:")[1].split()[0]) * 1024
    except (OSError, IndexError):
        return 0


def readable_paths():
    """What a worker may read: Python and the installed packages (each sys.path entry but the
    project's own folder and grading/), nst_utils.py, and the system files and folders a
    process needs. Not the project (the solution notebook), not the grader's modules, not other
    workers' folders."""
    project = {str(ROOT), str(ROOT / "grading")}
    python = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)} | {
        sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(
            sys.executable))}
    python = {p for p in python if p not in project and not ROOT.as_posix().startswith(p + "/")}
    system = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime",
              "/dev/urandom", "/dev/random", "/dev/zero", "/proc/self", "/proc/cpuinfo",
              "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu", "/sys/fs/cgroup"]
    return sorted(python) + [str(ROOT / "nst_utils.py")] + [p for p in system
                                                            if os.path.exists(p)]


# Landlock: an unprivileged Linux sandbox (landlock.io). Rights are named by bit; a right the
# ruleset "handles" is denied except where a rule allows it.
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
_FS_RIGHTS = {  # ABI version: the rights it added
    1: sum(1 << bit for bit in range(13)), 2: 1 << 13, 3: _FS_TRUNCATE, 5: _FS_IOCTL_DEV}
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_NET_TCP, _SCOPES = 0b11, 0b11  # bind+connect (ABI 4); abstract unix sockets+signals (ABI 6)
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


def landlock_ruleset(scratch):
    """A Landlock ruleset (its fd; None without Landlock) under which a process may read only
    readable_paths(), write only beneath `scratch` (and to /dev/null), open no TCP connections
    and signal no process outside."""
    abi = landlock_abi()
    if abi == 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    handled = sum(bits for version, bits in _FS_RIGHTS.items() if abi >= version)
    attr = _RulesetAttr(handled, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    rules = [(path, _READ) for path in readable_paths()]
    rules += [(str(scratch), handled), (os.devnull, _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE)]
    for path, allowed in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        if not os.path.isdir(path):
            allowed &= _FILE_RIGHTS
        rule = _PathBeneath(allowed & handled, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        os.close(fd)
    return ruleset


def landlock_restrict(ruleset):
    """Put this process and its future children under `ruleset`, for good."""
    if ruleset is None:
        return
    if ctypes.CDLL(None, use_errno=True).syscall(_SYS_RESTRICT, ruleset, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)


if __name__ == "__main__":
    zygote_main(int(sys.argv[1]))
