"""The Gradescope zip on a fresh system, as Gradescope runs it: a new Debian 12 (bookworm) root
file system made by debootstrap, the zip unpacked into /autograder/source, setup.sh run there as
root with no terminal and an empty environment, then run_autograder for three submissions (our
notebook, the students' release, a wrong gram_matrix), each results.json checked against
Gradescope's fields. Then, in cgroups of Gradescope's default container (half a CPU, "0.75GB"
read as 750,000,000 bytes), our notebook, which must be graded in full, and a gram_matrix that
eats memory, which must lose only its points; and our notebook in 512 MB, where results.json
must say which setting to raise instead of grading being killed. It reports the
setup's time and grading's peak memory (the sum of PSS over the grading process tree, file-backed
pages included), which must stay below what run_autograder asks of a container.

It drives the bundle only through its public commands (`python -m grading gradescope|release`,
setup.sh, run_autograder, results.json). Needs root (debootstrap, chroot, mount) and debootstrap
(Debian's package; .ci/run installs it). The fresh system reaches the registries through this
machine's own configuration, copied in as a person testing locally would: the Debian mirror
that apt uses here, pip's configuration files and PIP_* variables, the CA bundle, and read-only
binds of the local folders pip's configuration names. Nothing of it is written into the project.
About 5 minutes (docs/gradescope.md).
"""
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from container_cgroup import ContainerCgroup
from grading.gradescope import GRADING_NEEDS_MIB
from grading.notebook import GRADED_FUNCTIONS
from grading.plans import check_names
from process_memory import TreeMemory
from submissions import BROKEN, cell, with_graded_cell_replaced
from test_gradescope import scores, valid

pytestmark = pytest.mark.slow

SUITE = "bookworm"  # Debian 12
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/host-ca-bundle.crt"  # where the fresh system keeps this machine's CAs
WRONG_GRAM_MATRIX = cell("gram_matrix", """
def gram_matrix(A):
    return tf.matmul(tf.transpose(A), A)""")  # A^T A: the wrong product
CONTENT_COST_BY_KERAS = cell("compute_content_cost", """
def compute_content_cost(a_C, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    return tf.keras.backend.sum(tf.square(a_C - a_G)) / (4 * n_H * n_W * n_C)""")
REPORT = {}


def required(why):
    """Fail in CI (CI=true) and as root; skip only outside CI when not root."""
    if os.environ.get("CI") == "true" or os.geteuid() == 0:
        pytest.fail(why)
    pytest.skip(why)


def debian_mirror():
    """The mirror this machine's apt uses for Debian's main suite (read at run time)."""
    entries = []  # (URI, suites)
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for file in files:
        if not file.is_file() or file.suffix not in (".list", ".sources"):
            continue
        text = file.read_text(errors="replace")
        if file.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], words[2:3]))
        else:
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"(?m)^(\w[\w-]*):\s*(.*)$", stanza))
                if "deb" in fields.get("Types", "").split() and "Enabled" not in fields:
                    entries.extend((uri, fields.get("Suites", "").split())
                                   for uri in fields.get("URIs", "").split())
    for uri, suites in entries:
        if SUITE in suites:
            return uri
    for uri, _ in entries:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    required("no Debian mirror found in this machine's apt sources")


def pip_settings():
    """This machine's pip configuration: ({file: text} of its configuration files that exist,
    {key: value} of its PIP_* environment variables)."""
    home = Path.home()
    candidates = [Path("/etc/pip.conf"), *Path("/etc/xdg/pip").glob("*"),
                  *(Path(folder) / "pip" / "pip.conf"
                    for folder in os.environ.get("XDG_CONFIG_DIRS", "").split(":") if folder),
                  home / ".pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        candidates.append(Path(os.environ["PIP_CONFIG_FILE"]))
    files = {path: path.read_text() for path in candidates if path.is_file()}
    variables = {name[4:].lower().replace("_", "-"): value for name, value in os.environ.items()
                 if name.startswith("PIP_") and name != "PIP_CONFIG_FILE"}
    return files, variables


def local_paths(values):
    """The existing local files and folders that pip settings name (find-links, file:// index
    URLs, a constraints file), from their values."""
    found = set()
    for value in values:
        for word in value.split():
            path = Path(word[len("file://"):] if word.startswith("file://") else word)
            if path.is_absolute() and path.exists():
                found.add(path)
    return found


class FreshSystem:
    """A Debian root file system in folder/rootfs. Each command runs in a mount namespace of
    its own (unshare) where /proc, /sys, /dev and read-only binds of pip's local folders are
    mounted for it alone, so they vanish with it; close() unmounts whatever is still mounted
    under the root file system, and deletes it only when nothing is."""

    def __init__(self, folder):
        self.root, self.binds = folder / "rootfs", []

    def path(self, inside):
        return self.root / str(inside).lstrip("/")

    def bootstrap(self):
        mirror = debian_mirror()
        started = time.monotonic()
        log = self.root.parent / "debootstrap.log"
        with log.open("w") as output:
            done = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(self.root),
                                   mirror], stdout=output, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=1200)
        assert done.returncode == 0, f"debootstrap failed:\n{log.read_text()[-3000:]}"
        REPORT["debootstrap"] = time.monotonic() - started
        for name in ("resolv.conf", "hosts"):
            if Path("/etc", name).exists():
                shutil.copy(Path("/etc", name), self.path(f"/etc/{name}"))
        self.copy_pip_settings()

    def copy_pip_settings(self):
        """pip's configuration files at the same paths; PIP_* variables and the CA bundle in
        root's user configuration (which outranks the others, as the variables do here); the
        local folders they name bound read-only at the same paths (an index's .../simple: its
        parent, where its pages link)."""
        files, variables = pip_settings()
        values = list(variables.values())
        for path, text in files.items():
            inside = path if not path.is_relative_to(Path.home()) else \
                Path("/root") / path.relative_to(Path.home())
            self.path(inside).parent.mkdir(parents=True, exist_ok=True)
            self.path(inside).write_text(text)
            if path.suffix == ".conf":
                parser = configparser.ConfigParser(interpolation=None)
                parser.read_string(text)
                values += [value for section in parser.sections()
                           for value in parser[section].values()]
        for bundle in ("/etc/ssl/certs/ca-certificates.crt", os.environ.get("PIP_CERT"),
                       os.environ.get("SSL_CERT_FILE")):
            if bundle and Path(bundle).is_file():
                # apt's bundle until setup.sh installs ca-certificates; pip's for good
                self.path("/etc/ssl/certs").mkdir(parents=True, exist_ok=True)
                shutil.copy(bundle, self.path("/etc/ssl/certs/ca-certificates.crt"))
                shutil.copy(bundle, self.path(CA_BUNDLE))
                break
        user = configparser.ConfigParser(interpolation=None)
        user_file = self.path("/root/.config/pip/pip.conf")
        if user_file.exists():
            user.read(user_file)
        if not user.has_section("global"):
            user.add_section("global")
        for key, value in variables.items():
            user["global"][key] = value
        if self.path(CA_BUNDLE).exists():
            user["global"]["cert"] = CA_BUNDLE
        user_file.parent.mkdir(parents=True, exist_ok=True)
        with user_file.open("w") as file:
            user.write(file)
        folders = set()
        for path in local_paths(values):
            if path.is_dir() and not path.is_relative_to(Path("/etc")):
                folders.add(path.parent if path.name == "simple" else path)
            elif path.is_file() and not self.path(path).exists():
                self.path(path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, self.path(path))
        self.binds = sorted(folder for folder in folders
                            if not any(other in folder.parents for other in folders))
        for folder in self.binds:
            self.path(folder).mkdir(parents=True, exist_ok=True)

    def run(self, command, log, timeout, cgroup=None):
        """`command` (a shell line) as root inside, in an empty environment (PATH only), no
        terminal, in `cgroup` if given (a ContainerCgroup):
        (exit status, seconds, TreeMemory of its process tree)."""
        root = shlex.quote(str(self.root))
        mounts = [f"mount -t proc proc {root}/proc", f"mount -t sysfs sysfs {root}/sys",
                  f"mount --rbind /dev {root}/dev"]
        if cgroup is not None:
            mounts = [*(f"echo $$ > {shlex.quote(str(procs))}" for procs in cgroup.procs), *mounts,
                      *(line.format(root=root) for line in cgroup.mounts)]
        for folder in self.binds:
            inside = shlex.quote(str(self.path(folder)))
            mounts += [f"mount --bind {shlex.quote(str(folder))} {inside}",
                       f"mount -o remount,bind,ro {inside}"]
        script = " && ".join([*mounts, f"exec chroot {root} /usr/bin/env -i PATH={PATH} "
                                       f"/bin/bash -c {shlex.quote(command)}"])
        started = time.monotonic()
        with open(log, "w") as output:
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env={"PATH": PATH}, start_new_session=True)
            with TreeMemory(process.pid) as memory:
                try:
                    status = process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    status = process.wait()
        return status, time.monotonic() - started, memory

    def mounted(self):
        """Mount points under the root file system, as this process sees them."""
        return [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                if line.split()[1].startswith(str(self.root) + "/")]

    def close(self):
        for target in sorted(self.mounted(), key=len, reverse=True):
            if subprocess.run(["umount", target]).returncode != 0:
                subprocess.run(["umount", "-l", target])
        left = self.mounted()
        if left:  # never delete through a mount (/dev, a bound pip folder): leave it all
            raise RuntimeError(f"still mounted, {self.root} left in place: {left}")
        shutil.rmtree(self.root, ignore_errors=True)


def container(memory, cpus=None):
    """A ContainerCgroup, or the test skipped where cgroups cannot be made."""
    try:
        return ContainerCgroup(memory, cpus)
    except OSError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def fresh_system(tmp_path_factory):
    """A Debian 12 root file system with the autograder built in /autograder (setup.sh)."""
    if os.geteuid() != 0:
        required("the fresh-system test needs root (debootstrap, chroot, mount)")
    if not shutil.which("debootstrap"):
        required("debootstrap is not installed (apt-get install debootstrap; .ci/run does)")
    folder = tmp_path_factory.mktemp("fresh-system")
    bundle = folder / "autograder.zip"
    subprocess.run([sys.executable, "-m", "grading", "gradescope", str(bundle)], cwd=ROOT,
                   check=True, capture_output=True)
    system = FreshSystem(folder)
    try:
        system.bootstrap()
        source = system.path("/autograder/source")
        with zipfile.ZipFile(bundle) as opened:  # as unzip does: with each entry's mode
            for info in opened.infolist():
                opened.extract(info, source)
                os.chmod(source / info.filename, (info.external_attr >> 16) & 0o7777)
        shutil.copy(source / "run_autograder", system.path("/autograder/run_autograder"))
        status, seconds, _ = system.run("cd /autograder/source && bash ./setup.sh",
                                        folder / "setup.log", timeout=1800)
        REPORT["setup"] = seconds
        assert status == 0, \
            f"setup.sh failed ({status}):\n{(folder / 'setup.log').read_text()[-4000:]}"
        yield system, folder
    finally:
        system.close()


def autograde(fresh_system, submitted, cgroup=None):
    """Run run_autograder in the fresh system on `submitted` ({name: bytes}), in `cgroup` if
    given: (results, seconds, TreeMemory)."""
    system, folder = fresh_system
    for part in ("submission", "results"):
        shutil.rmtree(system.path(f"/autograder/{part}"), ignore_errors=True)
        system.path(f"/autograder/{part}").mkdir(parents=True)
    for name, data in submitted.items():
        system.path(f"/autograder/submission/{name}").write_bytes(data)
    log = folder / "run_autograder.log"
    status, seconds, memory = system.run("cd /autograder && ./run_autograder", log, timeout=900,
                                         cgroup=cgroup)
    results_file = system.path("/autograder/results/results.json")
    assert status == 0 and results_file.exists(), f"run_autograder: {status}\n{log.read_text()}"
    REPORT["protections"] = next((line for line in log.read_text().splitlines()
                                  if line.startswith("sandbox protections")), "")
    assert memory.peak_mib <= GRADING_NEEDS_MIB, \
        f"grading peaked at {memory}, above GRADING_NEEDS_MIB ({GRADING_NEEDS_MIB} MiB)"
    return valid(json.loads(results_file.read_text())), seconds, memory


def report(capsys, what, results, seconds, memory):
    REPORT.setdefault("peak", []).append(memory.peak_mib)
    REPORT.setdefault("peak_anon", []).append(memory.peak_anon_mib)
    with capsys.disabled():
        print(f"\nfresh Debian 12: debootstrap {REPORT['debootstrap']:.0f} s, setup.sh "
              f"{REPORT['setup']:.0f} s; {what}: score {results['score']:g}, run_autograder "
              f"{seconds:.1f} s (execution_time {results['execution_time']} s), {memory}; "
              f"{REPORT['protections'] or 'no sandbox started'}")


def test_our_notebook_gets_full_marks(fresh_system, capsys):
    results, seconds, memory = autograde(fresh_system, {
        "nst_assignment.ipynb": (ROOT / "nst_assignment.ipynb").read_bytes()})
    report(capsys, "our notebook", results, seconds, memory)
    assert results["score"] == pytest.approx(100), results
    assert all(test["status"] == "passed" for test in results["tests"])


def test_the_release_gets_zero_with_a_reason_per_function(fresh_system, tmp_path, capsys):
    release = tmp_path / "release.ipynb"
    subprocess.run([sys.executable, "-m", "grading", "release",
                    str(ROOT / "nst_assignment.ipynb"), str(release)],
                   cwd=ROOT, check=True, capture_output=True)
    results, seconds, memory = autograde(fresh_system,
                                         {"nst_assignment.ipynb": release.read_bytes()})
    report(capsys, "the release", results, seconds, memory)
    assert results["score"] == 0
    checks = check_names()
    for test in results["tests"]:  # each check listed, each with the function's reason
        count = len(checks[test["name"]])
        assert test["status"] == "failed", test
        assert test["output"].startswith(f"{count} of {count} checks fail"), test
        assert test["output"].count(f"{test['name']}: ") >= count, test


def test_a_wrong_gram_matrix_loses_only_its_points(fresh_system, tmp_path, capsys):
    """Also: its compute_content_cost, written with tf.keras, gets its points (the sandbox
    imports TensorFlow without Keras, which loads in the worker that uses it)."""
    notebook = with_graded_cell_replaced("gram_matrix", WRONG_GRAM_MATRIX,
                                         tmp_path / "student.ipynb")
    with_graded_cell_replaced("compute_content_cost", CONTENT_COST_BY_KERAS, notebook, notebook)
    results, seconds, memory = autograde(fresh_system,
                                         {"nst_assignment.ipynb": notebook.read_bytes()})
    report(capsys, "a wrong gram_matrix", results, seconds, memory)
    assert results["score"] == pytest.approx(80), results
    assert scores(results) == pytest.approx(
        {name: 0 if name == "gram_matrix" else 20 for name in GRADED_FUNCTIONS})


def test_our_notebook_is_graded_in_full_in_gradescopes_default_container(fresh_system, capsys):
    """In cgroups of Gradescope's default container, half a CPU and "0.75GB" read as the least
    it may mean (750,000,000 bytes, 715 MiB), our notebook is graded in full: nothing is killed
    for want of memory, no function runs out of time."""
    with container(750_000_000, cpus=0.5) as cgroup:
        results, seconds, memory = autograde(fresh_system, {
            "nst_assignment.ipynb": (ROOT / "nst_assignment.ipynb").read_bytes()}, cgroup)
    report(capsys, "our notebook in 0.5 CPU and 750 MB", results, seconds, memory)
    assert results["score"] == pytest.approx(100), results["output"]


def test_a_function_that_eats_memory_in_the_default_container_costs_only_its_points(
        fresh_system, tmp_path, capsys):
    """The same container, and a gram_matrix that allocates until it is stopped: the worker's
    limits stop it (not the container's), and the other functions get their points."""
    notebook = with_graded_cell_replaced("gram_matrix", BROKEN["eats_memory"][1],
                                         tmp_path / "student.ipynb")
    with container(750_000_000, cpus=0.5) as cgroup:
        results, seconds, memory = autograde(fresh_system,
                                             {"nst_assignment.ipynb": notebook.read_bytes()},
                                             cgroup)
    report(capsys, "gram_matrix eating memory, in 0.5 CPU and 750 MB", results, seconds, memory)
    assert scores(results) == pytest.approx(
        {name: 0 if name == "gram_matrix" else 20 for name in GRADED_FUNCTIONS}), results
    gram_matrix = next(test for test in results["tests"] if test["name"] == "gram_matrix")
    assert "used more than the 448 MB of memory" in gram_matrix["output"], gram_matrix


def test_a_container_with_too_little_memory_says_which_setting_to_raise(fresh_system, capsys):
    """In a 512 MB cgroup, grading does not start (it would be killed): results.json tells the
    instructor what to choose."""
    with container(512 << 20) as cgroup:
        results, seconds, memory = autograde(fresh_system, {
            "nst_assignment.ipynb": (ROOT / "nst_assignment.ipynb").read_bytes()}, cgroup)
    report(capsys, "our notebook in 512 MB", results, seconds, memory)
    assert results["score"] == 0
    assert "has 512 MB of memory" in results["output"], results["output"]
    assert '"0.5 CPU, 0.75GB RAM"' in results["output"]
