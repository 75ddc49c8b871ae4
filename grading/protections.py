"""The protections a worker gets where the kernel and the grader's rights allow them, and which
of them work here: tried once, in a child process that is thrown away, by the zygote; the
sandbox uses what works and the protections line says which (so a grader that is not root, or a
container that forbids some, still grades)."""
import enum
import os
import stat
import sys
from pathlib import Path

from grading import cgroup, keyring, landlock, mounts, namespaces, syscall_filter


class Protection(enum.Enum):
    """Each protection; its value is what the protections line says of it."""
    OWN_UID = "own uid and process limit"
    IPC_NAMESPACE = "ipc namespace"
    NETWORK_NAMESPACE = "network namespace"
    PRIVATE_TMPFS = "private tmpfs for files"
    CGROUP = "cgroup: memory, processes, one cpu"
    FRESH_KEYRING = "fresh session keyring"
    SECCOMP_FILTER = "seccomp filter"
    LANDLOCK = "landlock"
    # Not a protection, but said with them: where Python lives in a folder other users cannot
    # enter (pyenv under /root), a worker with a uid of its own can import only what the zygote
    # imported.
    PYTHON_READABLE = "python's own files readable by the workers"


def _try_own_uid():
    if os.geteuid() != 0:
        raise OSError("not root")


def _try_tmpfs():
    folder = Path(f"/tmp/nst-probe-{os.getpid()}")
    folder.mkdir()
    try:
        mounts.private_tmpfs(folder, os.getuid())
        mounts.unmount(folder)
    finally:
        folder.rmdir()


def _try_cgroup():
    cgroup.Cgroup(f"nst-probe-{os.getpid()}", 1 << 30).remove()


def _try_seccomp_filter():
    calls = syscall_filter.prepare()
    if calls is None:
        raise OSError("no libseccomp")
    syscall_filter.install(calls)


_ATTEMPTS = {
    Protection.OWN_UID: _try_own_uid,
    Protection.IPC_NAMESPACE: lambda: namespaces.unshare(namespaces.CLONE_NEWIPC),
    Protection.NETWORK_NAMESPACE: lambda: namespaces.unshare(namespaces.CLONE_NEWNET),
    Protection.PRIVATE_TMPFS: _try_tmpfs,
    Protection.CGROUP: _try_cgroup,
    Protection.FRESH_KEYRING: keyring.join_new_session_keyring,
    Protection.SECCOMP_FILTER: _try_seccomp_filter,
}  # the filter last: from then on the probe may make only the calls it allows


def _attempted():
    """{protection: True if its attempt worked} for those tried in a thrown-away child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        found = ""
        for protection, attempt in _ATTEMPTS.items():
            try:
                attempt()
                found += protection.name + "\n"
            except Exception:
                pass
        os.write(write_end, found.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        found = answer.read().decode().splitlines()
    os.waitpid(pid, 0)
    return {protection: protection.name in found for protection in _ATTEMPTS}


def readable_by_others(path):
    """Whether a user who neither owns `path` nor is in its group can reach and read it."""
    path = os.path.realpath(path)
    if not os.stat(path).st_mode & stat.S_IROTH:
        return False
    while (parent := os.path.dirname(path)) != path:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        path = parent
    return True


def available():
    """{protection: True if it works here}, every Protection in order. Called in the zygote,
    after it imported what workers need (the standard library and the packages)."""
    works = _attempted()
    works[Protection.LANDLOCK] = landlock.abi() > 0
    works[Protection.PYTHON_READABLE] = os.geteuid() != 0 or all(
        readable_by_others(sys.modules[name].__file__) for name in ("os", "numpy"))
    return {protection: works[protection] for protection in Protection}


IN_FORCE = set()  # in the zygote and its children: the protections that work here (available())
