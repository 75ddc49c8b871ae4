"""The confinement of a worker: in the child its supervisor forks, before any submission code,
these steps in this order (CONFINEMENT), each for good. What is not in force here
(protections.IN_FORCE) is skipped; the rest never is."""
import ctypes
import fcntl
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

from grading import cgroup, keyring, landlock, namespaces, syscall_filter
from grading.limits import LIMITS
from grading.protections import IN_FORCE, Protection

ROOT = Path(__file__).resolve().parent.parent
WORKER_UID_BASE = 1_500_000_000  # + the supervisor's pid: a uid of its own for every worker
FALLBACK_UID = 65534  # "nobody", where such uids cannot be used (some containers)
OOM_SCORE_ADJ = 1000  # a worker's: the kernel's out-of-memory killer picks it before all else
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                    "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
TASK_FD, RESULT_FD = 3, 4  # where a confined worker finds its pipes
PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 38, 36


def prctl(option, value):
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def clean_environment():
    """What the zygote (and so every worker) gets of the grader's environment: nothing secret;
    no GPU (grading runs on the CPU, like the references, and CUDA never starts in the zygote,
    which forks)."""
    kept = {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}
    return {"PATH": os.defpath, "LANG": "C.UTF-8", **kept, "HOME": "/nonexistent",
            "CUDA_VISIBLE_DEVICES": ""}


def worker_uid(scratch):
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


def readable_paths():
    """What a worker may read: Python and the installed packages (each sys.path entry but the
    project's own folder and grading/), nst_utils.py and nst_course/, and the system files and
    folders a process needs. Not the project (the solution notebook), not the grader's modules,
    not other workers' folders."""
    project = {str(ROOT), str(ROOT / "grading")}
    python = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)} | {
        sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(
            sys.executable))}
    python = {p for p in python if p not in project and not ROOT.as_posix().startswith(p + "/")}
    system = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime",
              "/dev/urandom", "/dev/random", "/dev/zero", "/proc/self", "/proc/cpuinfo",
              "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu", "/sys/fs/cgroup"]
    course = [str(ROOT / "nst_utils.py"), str(ROOT / "nst_course")]
    return sorted(python) + [p for p in course + system if os.path.exists(p)]


@dataclass
class Worker:
    """What the steps need and make: the worker's folder, uid (None: ours), pipes, limit."""
    scratch: Path
    uid: int
    task_fd: int
    result_fd: int
    memory_limit: int
    group: cgroup.Cgroup = None
    ruleset: int = None  # a Landlock ruleset's fd
    calls: object = None  # the seccomp filter, prepared


def new_session(worker):
    os.setsid()


def join_cgroup(worker):
    if worker.group is not None:
        worker.group.join()


def new_namespaces(worker):
    flags = ((namespaces.CLONE_NEWIPC if Protection.IPC_NAMESPACE in IN_FORCE else 0)
             | (namespaces.CLONE_NEWNET if Protection.NETWORK_NAMESPACE in IN_FORCE else 0))
    if flags:
        namespaces.unshare(flags)


def standard_descriptors(worker):
    """stdin /dev/null, stdout and stderr its log, the task and result pipes TASK_FD and
    RESULT_FD; every other descriptor closed."""
    log = os.open(worker.scratch / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if worker.uid is not None:
        os.fchown(log, worker.uid, worker.uid)
    null = os.open(os.devnull, os.O_RDONLY)
    # copies above every target first, so that no dup2 below overwrites a source
    null, log, task_fd, result_fd = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
                                     for fd in (null, log, worker.task_fd, worker.result_fd))
    for target, source in enumerate((null, log, log, task_fd, result_fd)):
        os.dup2(source, target)
    os.closerange(RESULT_FD + 1, 1 << 16)
    worker.task_fd, worker.result_fd = TASK_FD, RESULT_FD


def _virtual_memory():
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmSize:")[1].split()[0]) * 1024
    except (OSError, IndexError):
        return 0


def resource_limits(worker):
    """Address space, no core dumps, file size; processes where the uid is its own."""
    rlimits = [(resource.RLIMIT_AS, _virtual_memory() + worker.memory_limit),
               (resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, LIMITS.file_mb << 20)]
    if worker.uid is not None:  # counted per uid: only a uid of its own makes it the worker's
        # limit; a margin above the cgroup's pids.max, which counts only this worker's tree
        rlimits.append((resource.RLIMIT_NPROC, LIMITS.processes + 64))
    for limit, value in rlimits:
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):  # not enforced on this OS (macOS: RLIMIT_AS)
            pass


def first_to_die_out_of_memory(worker):
    """Where memory runs out (a container's limit), the kernel kills the worker first."""
    try:
        Path("/proc/self/oom_score_adj").write_text(str(OOM_SCORE_ADJ))
    except OSError:  # not Linux
        pass


def fresh_keyring(worker):
    if Protection.FRESH_KEYRING in IN_FORCE:
        keyring.join_new_session_keyring()  # as root: no keyring of its uid's is made


def prepare_rules(worker):
    """The Landlock ruleset (it opens the paths it allows while we still can) and the seccomp
    filter (libseccomp's work done before the filter is in force)."""
    worker.ruleset = landlock.ruleset(readable_paths(), worker.scratch)
    if Protection.SECCOMP_FILTER in IN_FORCE:
        worker.calls = syscall_filter.prepare()


def own_user(worker):
    if worker.uid is not None:
        os.setgroups([])
        os.setgid(worker.uid)
        os.setuid(worker.uid)


def no_new_privileges(worker):
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def landlock_restrict(worker):
    landlock.restrict(worker.ruleset)


def scratch_home(worker):
    """Its folder is its working directory, home and TMPDIR; the clean environment."""
    os.chdir(worker.scratch)
    os.environ.clear()
    os.environ.update(clean_environment(), HOME=str(worker.scratch), TMPDIR=str(worker.scratch))


def seccomp_filter(worker):
    syscall_filter.install(worker.calls)  # last: from here on, only the calls it allows


CONFINEMENT = (new_session, join_cgroup, new_namespaces, standard_descriptors, resource_limits,
               first_to_die_out_of_memory, fresh_keyring, prepare_rules, own_user,
               no_new_privileges, landlock_restrict, scratch_home, seccomp_filter)


def confine(worker):
    """Confine this process (the worker) for good, step by step."""
    for step in CONFINEMENT:
        step(worker)
