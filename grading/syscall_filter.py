"""The system calls a worker may make: a seccomp filter, built with libseccomp (through pyseccomp,
a ctypes binding with the API of libseccomp's own Python module) and installed last in a worker's
confinement, after no_new_privs.

It starts from Docker's default profile (an allowlist; everything else fails with EPERM) and is
stricter where a graded cell does not need a call, as measured by tracing whole gradings
(`strace -ff`, docs/threat-model.md): no sockets of any family (a worker makes none: not
Unix sockets bound to a path or abstract, netlink, packet, nor TCP or UDP), no io_uring,
userfaultfd, keyrings, namespaces, mounts, ptrace or other processes' memory, no BPF or perf
events, no kernel modules or kexec. A refused call returns EPERM, so the student's line raises
PermissionError with a clear message; clone3, whose flags a filter cannot read, returns ENOSYS,
so that the C library falls back to clone, whose flags it can.
"""
import errno

try:
    import pyseccomp
except (ImportError, OSError, RuntimeError):  # no libseccomp.so.2 on this machine
    pyseccomp = None

ALLOWED = {  # what the call is for: the calls
    "memory": "brk mmap munmap mremap mprotect madvise mincore mlock mlock2 mlockall munlock "
              "munlockall msync membarrier memfd_create pkey_alloc pkey_free pkey_mprotect "
              "map_shadow_stack",
    "files": "read write readv writev pread64 pwrite64 preadv preadv2 pwritev pwritev2 open "
             "openat openat2 creat close close_range lseek dup dup2 dup3 fcntl flock fsync "
             "fdatasync sync syncfs sync_file_range fallocate ftruncate truncate fadvise64 "
             "readahead sendfile copy_file_range splice tee access faccessat faccessat2 stat "
             "fstat lstat newfstatat statx statfs fstatfs getdents getdents64 getcwd chdir "
             "fchdir mkdir mkdirat rmdir rename renameat renameat2 link linkat symlink "
             "symlinkat unlink unlinkat readlink readlinkat chmod fchmod fchmodat fchmodat2 "
             "chown fchown lchown fchownat umask utime utimes utimensat futimesat getxattr "
             "lgetxattr fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr fsetxattr "
             "removexattr lremovexattr fremovexattr inotify_init inotify_init1 "
             "inotify_add_watch inotify_rm_watch cachestat",
    "waiting and events": "poll ppoll select pselect6 epoll_create epoll_create1 epoll_ctl "
                          "epoll_wait epoll_pwait epoll_pwait2 eventfd eventfd2 pipe pipe2 "
                          "futex futex_waitv futex_wake futex_wait futex_requeue "
                          "set_robust_list get_robust_list nanosleep clock_nanosleep "
                          "pause",
    "time": "clock_gettime clock_getres gettimeofday time times getitimer setitimer alarm "
            "timer_create timer_settime timer_gettime timer_getoverrun timer_delete "
            "timerfd_create timerfd_settime timerfd_gettime",
    "signals": "rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigsuspend "
               "rt_sigtimedwait rt_sigqueueinfo rt_tgsigqueueinfo sigaltstack signalfd "
               "signalfd4 kill tgkill tkill restart_syscall",
    "processes and threads": "fork vfork execve execveat exit exit_group wait4 waitid "
                             "set_tid_address rseq arch_prctl prctl getpid getppid gettid "
                             "getpgid getpgrp setpgid getsid setsid pidfd_open",
    "scheduling and limits": "sched_yield sched_getaffinity sched_setaffinity sched_getparam "
                             "sched_setparam sched_getscheduler sched_setscheduler "
                             "sched_getattr sched_setattr sched_get_priority_max "
                             "sched_get_priority_min sched_rr_get_interval getpriority "
                             "setpriority ioprio_get ioprio_set getrlimit setrlimit prlimit64 "
                             "getrusage getcpu",
    "identity (no privileges: no_new_privs)": "getuid geteuid getgid getegid getresuid "
                                              "getresgid getgroups setuid setgid setreuid "
                                              "setregid setresuid setresgid setgroups "
                                              "setfsuid setfsgid capget capset",
    "the system": "uname sysinfo getrandom ioctl",
    "System V and POSIX IPC (its own IPC namespace)": "shmget shmat shmdt shmctl semget semop "
                                                      "semtimedop semctl msgget msgsnd msgrcv "
                                                      "msgctl",
    "confining itself further": "seccomp landlock_create_ruleset landlock_add_rule "
                                "landlock_restrict_self",
}
# clone() with any of these flags makes a namespace (Docker's mask)
NAMESPACE_FLAGS = 0x7E020000
REFUSED = ("socket socketpair io_uring_setup io_uring_enter io_uring_register userfaultfd "
           "keyctl add_key request_key unshare setns ptrace process_vm_readv process_vm_writev bpf "
           "perf_event_open mount umount2 kexec_load kexec_file_load init_module finit_module "
           "delete_module").split()  # none is in ALLOWED: the tests check each fails with EPERM


def names():
    """Every call the filter allows outright, by name."""
    return sorted({name for calls in ALLOWED.values() for name in calls.split()})


def _rules():
    """The filter, before it is loaded: the allowed calls, clone by its flags, clone3."""
    seccomp = pyseccomp
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.ERRNO(errno.EPERM))
    for name in names():
        try:
            rules.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):  # no such call on this architecture
            continue
    rules.add_rule(seccomp.ALLOW, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, NAMESPACE_FLAGS, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return rules


def prepare():
    """The filter for a worker, built while its libraries can still be read; None where
    libseccomp is missing."""
    return None if pyseccomp is None else _rules()


def install(rules):
    """Put this process and every thread and child it starts under `rules`, for good."""
    if rules is not None:
        rules.load()
