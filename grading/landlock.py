"""Landlock (Linux >= 5.13, landlock.io): an unprivileged process's own limits on what it may do
to files, which TCP ports it may use, and what it may reach outside its domain. A right the
ruleset handles is denied everywhere except beneath the paths a rule allows it for. The rights
and the calls are the kernel's (include/uapi/linux/landlock.h); each ABI version added some."""
import ctypes
import enum
import os
import sys

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on x86_64 and arm64
_RULE_PATH_BENEATH = 1
_CREATE_RULESET_VERSION = 1


class Fs(enum.IntFlag):
    """Access rights to files and folders."""
    EXECUTE = 1 << 0
    WRITE_FILE = 1 << 1
    READ_FILE = 1 << 2
    READ_DIR = 1 << 3
    REMOVE_DIR = 1 << 4
    REMOVE_FILE = 1 << 5
    MAKE_CHAR = 1 << 6
    MAKE_DIR = 1 << 7
    MAKE_REG = 1 << 8
    MAKE_SOCK = 1 << 9
    MAKE_FIFO = 1 << 10
    MAKE_BLOCK = 1 << 11
    MAKE_SYM = 1 << 12
    REFER = 1 << 13  # ABI 2
    TRUNCATE = 1 << 14  # ABI 3
    IOCTL_DEV = 1 << 15  # ABI 5


class Net(enum.IntFlag):
    """TCP (ABI 4)."""
    BIND_TCP = 1 << 0
    CONNECT_TCP = 1 << 1


class Scope(enum.IntFlag):
    """What a process may reach outside its domain (ABI 6)."""
    ABSTRACT_UNIX_SOCKET = 1 << 0
    SIGNAL = 1 << 1


FS_ADDED = {1: Fs(sum(1 << bit for bit in range(13))), 2: Fs.REFER, 3: Fs.TRUNCATE,
            5: Fs.IOCTL_DEV}  # ABI version: the file rights it added
FILE_RIGHTS = Fs.EXECUTE | Fs.WRITE_FILE | Fs.READ_FILE | Fs.TRUNCATE | Fs.IOCTL_DEV  # the rest
# are rights over a folder's entries
READ = Fs.EXECUTE | Fs.READ_FILE | Fs.READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(*arguments):
    return ctypes.CDLL(None, use_errno=True).syscall(*arguments)


def abi():
    """The kernel's Landlock ABI version, 0 where there is none."""
    if not sys.platform.startswith("linux"):
        return 0
    return max(_syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION), 0)


def ruleset(readable, writable):
    """A ruleset (its fd; None without Landlock) under which a process may read only beneath the
    paths `readable`, write only beneath the folder `writable` (and to /dev/null), open no TCP
    connection and reach no abstract socket or signal no process outside its domain. The paths
    are opened now, while the process still can."""
    version = abi()
    if version == 0:
        return None
    handled = Fs(sum(bits for added, bits in FS_ADDED.items() if version >= added))
    attr = _RulesetAttr(handled, Net.BIND_TCP | Net.CONNECT_TCP if version >= 4 else 0,
                        Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL if version >= 6 else 0)
    fd = _syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    rules = [(path, READ) for path in readable]
    rules += [(str(writable), handled), (os.devnull, Fs.READ_FILE | Fs.WRITE_FILE | Fs.TRUNCATE)]
    for path, allowed in rules:
        beneath = os.open(path, os.O_PATH | os.O_CLOEXEC)
        if not os.path.isdir(path):
            allowed &= FILE_RIGHTS
        rule = _PathBeneath(allowed & handled, beneath)
        if _syscall(_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        os.close(beneath)
    return fd


def restrict(fd):
    """Put this process and its future children under the ruleset `fd`, for good."""
    if fd is None:
        return
    if _syscall(_RESTRICT_SELF, fd, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(fd)
