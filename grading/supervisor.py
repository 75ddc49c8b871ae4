"""The supervisor: one per task, a child of the zygote and a subreaper, which forks the worker,
confines it, holds its whole tree (double-forked or not: orphans come to the subreaper) to its
limits, relays its valid records to the grader, then ends it and says how it ended (an Ending)."""
import os
import select
import shutil
import signal
import stat
import time
import traceback
from pathlib import Path

from grading import cgroup, confinement, mounts, pictures, wire
from grading.notebook import open_beneath
from grading.protections import IN_FORCE, Protection
from grading.wire import Ending

POLL_SECONDS = 0.05
GRADER_ERROR = 70  # a worker's exit status when our own code in it failed
KEPT_FILE_BYTES = 16 << 20  # the largest file kept from a worker's folder


def supervise(request, task_fd, report_fd):
    """Fork the worker, hold it to its limits, end its whole tree; forward its valid records to
    the grader; how it ended."""
    confinement.prctl(confinement.PR_SET_CHILD_SUBREAPER, 1)
    scratch = Path(request["scratch"])
    work = scratch / "work"
    work.mkdir()
    scratch.chmod(0o711)  # the worker may pass through to its folder, nothing more
    uid = confinement.worker_uid(work)
    if Protection.PRIVATE_TMPFS in IN_FORCE:
        mounts.private_tmpfs(work, os.getuid() if uid is None else uid)
    group = (cgroup.Cgroup(f"nst-{os.getppid()}-{os.getpid()}", request["memory_limit"])
             if Protection.CGROUP in IN_FORCE else None)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.close(report_fd)
            worker = confinement.Worker(work, uid, task_fd, write_end, request["memory_limit"],
                                        group)
            confinement.confine(worker)
            from grading import worker as graded_cell
            entry = pictures.decode_task if request["kind"] == "pictures" else graded_cell.run_task
            entry(wire.loads(read_all(worker.task_fd)),
                  lambda record: send(worker.result_fd, record))
        except BaseException:
            traceback.print_exc()  # into the worker's log
            os._exit(GRADER_ERROR)
        os._exit(0)
    os.close(write_end)
    os.close(task_fd)
    try:
        ending = _watch(request, pid, read_end, report_fd, group, work)
        if group is not None and group.out_of_memory():  # the kernel ended it for memory
            ending["how"] = Ending.MEMORY
        elif group is not None and group.out_of_processes():  # a fork or thread was refused
            ending["how"] = Ending.PROCESSES
    finally:
        kill_descendants()
        if group is not None:
            group.remove()
    copy_kept(work, scratch / "kept", request["keep"])
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
        """Ending.TIME or Ending.BUDGET once a limit has passed, else None."""
        now = time.monotonic()
        if now - self.stage_started > self.time_limit:
            return Ending.TIME
        return Ending.BUDGET if now - self.started > self.budget else None


def _watch(request, pid, read_end, report_fd, group, work):
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
            how = Ending.EXIT if status >= 0 else Ending.SIGNAL
        elif total > wire.MAX_LINE_BYTES:
            how = Ending.OUTPUT
        elif group is not None and group.out_of_memory():
            how = Ending.MEMORY
        elif group is not None and group.out_of_processes():
            how = Ending.PROCESSES
        elif Protection.PRIVATE_TMPFS in IN_FORCE and mounts.disk_full(work):
            how = Ending.DISK
        elif _tree_rss() > request["memory_limit"]:
            how = Ending.MEMORY
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
            wire.write_all(report_fd, line + b"\n")


def send(fd, record):
    wire.write_all(fd, wire.dumps(record))


def read_all(fd, limit=wire.MAX_LINE_BYTES):
    chunks, total = [], 0
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ValueError("task too large")
    os.close(fd)
    return b"".join(chunks)


def copy_kept(work, kept, names, max_bytes=KEPT_FILE_BYTES):
    """Copy each relative path of `names` from `work` (a dead worker's folder) to `kept`: regular
    files only, at most `max_bytes` each, no link followed anywhere on the way."""
    for name in names:
        try:
            fd = open_beneath(work, *Path(name).parts)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as source:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
                continue
            target = kept / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as copy:
                shutil.copyfileobj(source, copy, max_bytes)


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


def kill(pid):
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
            kill(process.pid)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not children:
            return
        time.sleep(0.01)
