"""Cgroups with a container's limits, for the tests and benchmarks that grade as Gradescope's
container would: below this process's own groups (cgroup v1 or v2), a memory limit and a share
of one CPU (a CFS quota). Needs root.

    with ContainerCgroup(750_000_000, cpus=0.5) as group:
        ...  # write os.getpid() into each of group.procs to enter it
"""
import os

from grading.cgroup import CGROUPS, memberships

PERIOD_US = 100_000


class ContainerCgroup:
    """`memory` bytes (None: no limit) and `cpus` of one CPU (None: no quota). `mounts` are the
    shell lines that mount the memory hierarchy at {root}/sys/fs/cgroup, as a container sees
    its own; `procs` the cgroup.procs files a process joins. OSError if they cannot be made."""

    def __init__(self, memory=None, cpus=None):
        own = memberships()
        self.folders = []
        try:
            if "memory" in own:  # v1: a hierarchy per controller
                self.mounts = ["mount -t tmpfs cgroups {root}/sys/fs/cgroup",
                               "mkdir {root}/sys/fs/cgroup/memory",
                               "mount -t cgroup -o memory memory {root}/sys/fs/cgroup/memory"]
                if memory is not None:
                    self._limit("memory", own["memory"], {"memory.limit_in_bytes": memory})
                if cpus is not None:
                    self._limit("cpu", own["cpu"], {"cpu.cfs_period_us": PERIOD_US,
                                                    "cpu.cfs_quota_us": int(cpus * PERIOD_US)})
            else:
                self.mounts = ["mount -t cgroup2 cgroup2 {root}/sys/fs/cgroup"]
                limits = {} if memory is None else {"memory.max": memory}
                if cpus is not None:
                    limits["cpu.max"] = f"{int(cpus * PERIOD_US)} {PERIOD_US}"
                self._limit("", own[""], limits)
        except (OSError, KeyError) as error:
            self.__exit__()
            raise OSError(f"cannot limit a cgroup's memory or CPU here ({error!r})") from None
        self.procs = [folder / "cgroup.procs" for folder in self.folders]

    def _limit(self, controller, own, values):
        top = CGROUPS / controller
        parent = top / own.strip("/")
        folder = (parent if parent.is_dir() else top) / f"nst-container-{os.getpid()}"
        folder.mkdir()
        self.folders.append(folder)
        for name, value in values.items():
            (folder / name).write_text(str(value))

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        for folder in self.folders:
            folder.rmdir()
