"""A private tmpfs for the files a worker writes: a mount of its own, in a mount namespace of its
supervisor's, gone with it, and no larger than the files a graded function may write."""
import os

from grading.limits import LIMITS
from grading.namespaces import CLONE_NEWNS, check, libc, unshare

MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 1 << 14, 1 << 18
MNT_DETACH = 2


def private_tmpfs(folder, uid):
    """In a new mount namespace (this process's, and its children's), mount a tmpfs of
    LIMITS.scratch_mb on `folder`, owned by `uid`."""
    unshare(CLONE_NEWNS)
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    options = f"size={LIMITS.scratch_mb << 20},mode=0700,uid={uid},gid={uid}".encode()
    check(libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options),
          "mount tmpfs")


def unmount(folder):
    libc.umount2(str(folder).encode(), MNT_DETACH)


def disk_full(folder):
    """True once the files in `folder` (a tmpfs of LIMITS.scratch_mb) nearly fill it."""
    try:
        usage = os.statvfs(folder)
    except OSError:
        return False
    return usage.f_bfree * usage.f_frsize < (1 << 20)
