"""The kernel's resource limits for one worker, where the grader may use them (as root on Linux):

- a control group (cgroup v1 or v2) of its own: memory of every kind the kernel charges to it
  (anonymous, memfd and shared memory, files in its tmpfs), processes and threads, one CPU;
- an IPC namespace (System V segments die with the worker) and a network namespace (no network
  at all, UDP included);
- a private tmpfs of SCRATCH_BYTES for the files it writes, gone with its supervisor.

`available()` says which of them work here, and whether a worker can join a fresh session keyring
and install its seccomp filter (grading/keyring.py, grading/syscall_filter.py); the sandbox
reports it once per run and uses what works, so a grader that is not root, or a container that
forbids them, still grades.
"""
import ctypes
import os
import shutil
import stat
from pathlib import Path

from grading import keyring, syscall_filter
from grading.notebook import open_beneath

SCRATCH_BYTES = 512 << 20  # all the files one worker may write
MAX_PROCESSES = 512  # threads included
CPU_PERIOD_US = 100_000  # one CPU: quota = period
CGROUPS = Path("/sys/fs/cgroup")
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 1 << 14, 1 << 18
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


# ----- a tmpfs of its own for the worker's files -----

def private_tmpfs(folder, uid):
    """In a new mount namespace (this process's, and its children's), mount a tmpfs of
    SCRATCH_BYTES on `folder`, owned by `uid`."""
    unshare(CLONE_NEWNS)
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    options = f"size={SCRATCH_BYTES},mode=0700,uid={uid},gid={uid}".encode()
    _check(_libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options),
           "mount tmpfs")


def disk_full(folder):
    """True once the files in `folder` (a tmpfs of SCRATCH_BYTES) nearly fill it."""
    try:
        usage = os.statvfs(folder)
    except OSError:
        return False
    return usage.f_bfree * usage.f_frsize < (1 << 20)


def copy_kept(work, kept, names, max_bytes=16 << 20):
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


# ----- a control group of its own -----

class Cgroup:
    """The worker's control group: memory, processes and one CPU. v2 where /sys/fs/cgroup is
    unified, else one group in each v1 hierarchy; created below this process's own group."""

    def __init__(self, name, memory_bytes):
        self.folders = {}
        try:
            if (CGROUPS / "cgroup.controllers").exists():  # v2
                folder = _own_group("") / name
                folder.mkdir()
                self.folders = {"memory": folder, "pids": folder, "cpu": folder}
                self._write("memory", "memory.max", memory_bytes)
                self._write("memory", "memory.swap.max", 0, required=False)
                self._write("cpu", "cpu.max", f"{CPU_PERIOD_US} {CPU_PERIOD_US}")
            else:
                for controller in ("memory", "pids", "cpu"):
                    folder = _own_group(controller) / name
                    folder.mkdir()
                    self.folders[controller] = folder
                self._write("memory", "memory.limit_in_bytes", memory_bytes)
                self._write("cpu", "cpu.cfs_period_us", CPU_PERIOD_US)
                self._write("cpu", "cpu.cfs_quota_us", CPU_PERIOD_US)
            self._write("pids", "pids.max", MAX_PROCESSES)
        except OSError:  # what was made is removed: a half-made group is no group
            self.remove()
            raise

    def _write(self, controller, file, value, required=True):
        try:
            (self.folders[controller] / file).write_text(f"{value}\n")
        except OSError:
            if required:
                raise

    def join(self):
        """Put this process (and so everything it starts) in the group."""
        for folder in set(self.folders.values()):
            (folder / "cgroup.procs").write_text(f"{os.getpid()}\n")

    def _count(self, controller, file, key):
        try:
            for line in (self.folders[controller] / file).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def out_of_memory(self):
        """Whether the kernel killed a process of the group for want of memory."""
        return (self._count("memory", "memory.events", "oom_kill")
                or self._count("memory", "memory.oom_control", "oom_kill")) > 0

    def out_of_processes(self):
        """Whether a process or thread of the group could not start for the limit."""
        return self._count("pids", "pids.events", "max") > 0

    def remove(self):
        for folder in set(self.folders.values()):
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # its last processes are still being reaped
                    import time
                    time.sleep(0.01)


def remove_groups(prefix):
    """Remove the empty groups below this process's own whose names start with `prefix` (those
    of supervisors that were killed before they could remove their own)."""
    for controller in ("", "memory", "pids", "cpu"):
        try:
            folders = list(_own_group(controller).glob(prefix + "*"))
        except OSError:
            continue
        for folder in folders:
            try:
                folder.rmdir()
            except OSError:
                pass


def _own_group(controller):
    """This process's cgroup folder in the hierarchy of `controller` ("" for v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (not controller and controllers == ""):
            return CGROUPS / controller / path.lstrip("/") if controller else \
                CGROUPS / path.lstrip("/")
    raise OSError(f"no {controller or 'v2'} cgroup for this process")


# ----- which of these work here -----

def available():
    """{protection: True if it works here}, tried out in a child process that is thrown away."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        found = ""
        for name, attempt in _ATTEMPTS:
            try:
                attempt()
                found += name + "\n"
            except Exception:
                pass
        os.write(write_end, found.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        found = answer.read().decode().splitlines()
    os.waitpid(pid, 0)
    return {name: name in found for name, _ in _ATTEMPTS}


def _try_tmpfs():
    folder = Path(f"/tmp/nst-probe-{os.getpid()}")
    folder.mkdir()
    try:
        private_tmpfs(folder, os.getuid())
        _libc.umount2(str(folder).encode(), MNT_DETACH)
    finally:
        folder.rmdir()


def _try_cgroup():
    Cgroup(f"nst-probe-{os.getpid()}", 1 << 30).remove()


_ATTEMPTS = [
    ("own uid and process limit", lambda: os.geteuid() == 0 or _fail()),
    ("ipc namespace", lambda: unshare(CLONE_NEWIPC)),
    ("network namespace", lambda: unshare(CLONE_NEWNET)),
    ("private tmpfs for files", _try_tmpfs),
    ("cgroup: memory, processes, one cpu", _try_cgroup),
    ("fresh session keyring", keyring.join_new_session_keyring),
    ("seccomp filter", lambda: syscall_filter.install(syscall_filter.prepare() or _fail())),
]  # the filter last: from then on the probe may make only the calls it allows


def _fail():
    raise OSError("not root")
