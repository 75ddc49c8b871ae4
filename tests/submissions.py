"""Students' submissions for the grading tests, built from our notebook by replacing one graded
cell: broken kinds (mistakes a student makes) and attacks (a student after a better grade). Each
maps a name to (the graded function it breaks, its cell's new source, or None to drop the cell).
Attacks are graded only in copies of the project (project_copy), never in the checkout.
"""
import json
import shutil
import subprocess
import sys

from conftest import ROOT
from grading.notebook import cell_source, read_notebook
from grading.references import J_STYLE_LAYER


def cell(name, body):
    return f"# GRADED FUNCTION: {name}\n\n{body.strip()}\n"


MODEL_NN = """
def model_nn(sess, input_image, num_iterations = 200):
    sess.run(tf.global_variables_initializer())
    sess.run(model['input'].assign(input_image))
    for i in range(num_iterations):
        sess.run(train_step)
        generated_image = sess.run(model['input'])
        if i % 20 == 0:
            Jt, Jc, Js = sess.run([J, J_content, J_style])
            print("Iteration " + str(i) + " :")
            print("total cost = " + str(Jt))
            print("content cost = " + str(Jc))
            print("style cost = " + str(Js))
            save_image(CONFIG.OUTPUT_DIR + str(i) + ".png", generated_image)
    save_image(CONFIG.OUTPUT_DIR + "generated_image.jpg", generated_image)
    return generated_image"""

BROKEN = {
    "syntax_error": ("gram_matrix", cell("gram_matrix", """
def gram_matrix(A):
    GA = tf.matmul(A, tf.transpose(A)
    return GA""")),
    "exception_at_definition": ("total_cost", cell("total_cost", """
def total_cost(J_content, J_style, alpha = ten, beta = 40):
    return alpha * J_content + beta * J_style""")),
    "exception_at_call": ("compute_content_cost", cell("compute_content_cost", """
def compute_content_cost(a_C, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    return tf.reduce_summ(tf.square(a_C - a_G)) / (4 * n_H * n_W * n_C)""")),
    "missing_function": ("model_nn", None),
    "renamed_function": ("gram_matrix", cell("gram_matrix", """
def gram(A):
    return tf.matmul(A, tf.transpose(A))""")),
    "wrong_signature": ("total_cost", cell("total_cost", """
def total_cost(J_content, J_style):
    return 10 * J_content + 40 * J_style""")),
    "returns_numpy_value": ("compute_layer_style_cost", cell("compute_layer_style_cost", """
def compute_layer_style_cost(a_S, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    a_S = tf.transpose(tf.reshape(a_S, [n_H * n_W, n_C]))
    a_G = tf.transpose(tf.reshape(a_G, [n_H * n_W, n_C]))
    J = tf.reduce_sum(tf.square(gram_matrix(a_S) - gram_matrix(a_G))) / (4 * n_C**2 * (n_H * n_W)**2)
    with tf.Session() as session:
        return session.run(J)""")),
    "cell_never_finishes": ("compute_content_cost", cell("compute_content_cost", """
def compute_content_cost(a_C, a_G):
    return tf.reduce_sum(tf.square(a_C - a_G))

while True:
    pass""")),
    "call_never_finishes": ("gram_matrix", cell("gram_matrix", """
def gram_matrix(A):
    while True:
        pass""")),
    "top_level_code_crashes": ("model_nn", cell("model_nn", """
my_picture = imageio.imread("images/my_holiday_photo.jpg")

def model_nn(sess, input_image, num_iterations = 200):
    return input_image""")),
    "hard_coded_expected_output": ("compute_content_cost", cell("compute_content_cost", """
def compute_content_cost(a_C, a_G):
    return tf.constant(6.76559)""")),
    "straight_reshape_without_transpose": ("compute_layer_style_cost",
                                           cell("compute_layer_style_cost", """
def compute_layer_style_cost(a_S, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    a_S = tf.reshape(a_S, [n_C, n_H * n_W])
    a_G = tf.reshape(a_G, [n_C, n_H * n_W])
    GS, GG = gram_matrix(a_S), gram_matrix(a_G)
    return tf.reduce_sum(tf.square(GS - GG)) / (4 * n_C**2 * (n_H * n_W)**2)""")),
    "model_nn_forgets_to_assign_input": ("model_nn", cell("model_nn", MODEL_NN.replace(
        "    sess.run(model['input'].assign(input_image))\n", ""))),
    "kills_its_process": ("total_cost", cell("total_cost", """
import os, signal
os.kill(os.getpid(), signal.SIGKILL)""")),
    "eats_memory": ("gram_matrix", cell("gram_matrix", """
def gram_matrix(A):
    hoard = []
    while True:
        hoard.append(b"x" * 10**8)""")),
}

# each i.png saved one step early: the picture taken before iteration i's train_step
STALE_PICTURES = MODEL_NN.replace("""        sess.run(train_step)
        generated_image = sess.run(model['input'])""", """        before_step = sess.run(model['input'])
        sess.run(train_step)
        generated_image = sess.run(model['input'])""").replace(
    """str(i) + ".png", generated_image)""", """str(i) + ".png", before_step)""")

GRADER_KEY = "grader-token"  # planted in the grader's session keyring (plant_graders_key)
LEFT_BEHIND = "nst-left-behind"  # what a worker tries to leave in keyrings

# Each attack pairs a wrong function with a trick that, if it worked, would pass it anyway.
OLD_FIXED_INPUTS = {(1, 4, 4, 3): J_STYLE_LAYER, (1, 5, 7, 4): 5.0353657459215295,
                    (1, 3, 9, 2): 10.523418677399842, (1, 6, 2, 5): 14.008052003978047,
                    (1, 1, 1, 1): 46.19853657235811}
ATTACKS = {
    "patches_pytest_reports": ("gram_matrix", cell("gram_matrix", """
try:
    import _pytest.reports
    _original = _pytest.reports.TestReport.__init__
    def _always_passed(self, *args, **kwargs):
        _original(self, *args, **kwargs)
        self.outcome, self.longrepr = "passed", None
    _pytest.reports.TestReport.__init__ = _always_passed
except Exception:
    pass

def gram_matrix(A):
    return A""")),
    "patches_numpy_comparisons": ("compute_content_cost", cell("compute_content_cost", """
import numpy
numpy.testing.assert_allclose = lambda *args, **kwargs: None
numpy.allclose = lambda *args, **kwargs: True
numpy.isclose = lambda a, b, *args, **kwargs: numpy.ones(numpy.shape(a), bool)
numpy.array_equal = lambda *args, **kwargs: True

def compute_content_cost(a_C, a_G):
    return tf.constant(0.0)""")),
    "returns_object_that_lies": ("total_cost", cell("total_cost", """
class Agreeable(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __sub__(self, other): return 0.0
    def __rsub__(self, other): return 0.0
    def __abs__(self): return 0.0
    def __lt__(self, other): return True
    def __le__(self, other): return True
    __hash__ = float.__hash__

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    return Agreeable(0.0)""")),
    "exits_at_definition": ("compute_layer_style_cost", cell("compute_layer_style_cost", """
import os
os._exit(0)""")),
    "exits_at_call": ("compute_content_cost", cell("compute_content_cost", """
import os

def compute_content_cost(a_C, a_G):
    os._exit(0)""")),
    "sys_exit_at_call": ("gram_matrix", cell("gram_matrix", """
import sys

def gram_matrix(A):
    sys.exit(0)""")),
    "rewrites_junit_report_in_background": ("total_cost", cell("total_cost", """
import os, time
FORGED = ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
          'errors="0" failures="0" skipped="0" tests="1"><testcase classname="forged" '
          'name="test_total_cost[gives_reference_value]" time="0"/></testsuite></testsuites>')

def report_path():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            arguments = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        except OSError:
            continue
        for argument in arguments:
            if argument.startswith(b"--junitxml="):
                return argument.split(b"=", 1)[1].decode()

path = report_path()
if path and os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for _ in range(600):
            try:
                with open(path + ".tmp", "w") as file:
                    file.write(FORGED)
                os.replace(path + ".tmp", path)
            except OSError:
                pass
            time.sleep(0.1)
    os._exit(0)

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    return J_content + J_style""")),
    "writes_into_project_files": ("compute_content_cost", cell("compute_content_cost", """
import os, nst_utils
project = os.path.dirname(os.path.abspath(nst_utils.__file__))
for relative, payload in [("grading/plans.py", "\\nclose = lambda *args, **kwargs: None\\n"),
                          ("tests/conftest.py", "\\n# every function passes\\n"),
                          ("nst_utils.py", "\\n# graded by a friend\\n")]:
    try:
        with open(os.path.join(project, relative), "a") as file:
            file.write(payload)
    except OSError:
        pass

def compute_content_cost(a_C, a_G):
    return tf.reduce_sum(a_C - a_G)""")),
    "allocates_8_gb": ("gram_matrix", cell("gram_matrix", """
def gram_matrix(A):
    hoard = b"x" * (8 * 2**30)
    return tf.matmul(A, tf.transpose(A))""")),
    "hard_coded_table_of_public_inputs": ("compute_layer_style_cost",
                                          cell("compute_layer_style_cost", f"""
TABLE = {OLD_FIXED_INPUTS!r}  # every input the tests used to give, by shape

def compute_layer_style_cost(a_S, a_G):
    return tf.constant(TABLE.get(tuple(a_G.get_shape().as_list()), 1.0))""")),
    "forges_result_records": ("gram_matrix", cell("gram_matrix", """
import base64, json, os
import numpy as np
GA = np.array([[6.42230511, -4.42912197, -2.09668207], [-4.42912197, 19.46583748, 19.56387138],
               [-2.09668207, 19.56387138, 20.6864624]])

def gram_matrix(A):
    value = {"shape": [3, 3], "float64": base64.b64encode(GA.tobytes()).decode()}
    for call in range(10):
        line = json.dumps({"check": f"call{call}", "result": {"value": value}}) + "\\n"
        for fd in range(3, 100):
            try:
                os.write(fd, line.encode())
            except OSError:
                pass
    os._exit(0)""")),
    "kills_the_grader": ("compute_content_cost", cell("compute_content_cost", """
import os, signal
zygote = os.getppid()
grader = int(open(f"/proc/{zygote}/stat").read().rsplit(")", 1)[1].split()[1])
for target in (zygote, grader):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass

def compute_content_cost(a_C, a_G):
    return tf.constant(0.0)""")),

    "reads_the_solution_notebook": ("gram_matrix", cell("gram_matrix", """
import json, os, nst_utils
try:
    folder = os.path.dirname(os.path.abspath(nst_utils.__file__))
    for solution_cell in json.load(open(os.path.join(folder, "nst_assignment.ipynb")))["cells"]:
        solution = "".join(solution_cell["source"])
        if solution.startswith("# GRADED FUNCTION: gram_matrix"):
            exec(solution)
except OSError:
    pass
if "gram_matrix" not in globals():
    def gram_matrix(A):
        return A""")),
    "imports_the_reference_formulas": ("compute_layer_style_cost",
                                       cell("compute_layer_style_cost", """
try:
    import grading.references as references
    def compute_layer_style_cost(a_S, a_G):
        return tf.numpy_function(lambda s, g: np.float32(references.np_layer_style_cost(s, g)),
                                 [a_S, a_G], tf.float32)
except Exception:
    def compute_layer_style_cost(a_S, a_G):
        return tf.constant(0.0)""")),
    "takes_the_graders_gram_matrix": ("gram_matrix", cell("gram_matrix", """
import sys
def gram_matrix(A):
    for module in list(sys.modules.values()):
        helper = getattr(module, "gram_matrix", None)
        if callable(helper) and getattr(module, "__name__", "").startswith("grading"):
            return helper(A)
    for module in list(sys.modules.values()):
        for name in dir(module) if getattr(module, "__name__", "").startswith("grading") else []:
            if "gram" in name.lower() and callable(getattr(module, name)):
                return getattr(module, name)(A)
    return A""")),
    "prints_costs_in_a_list": ("model_nn", cell("model_nn", MODEL_NN.replace(
        'str(Jt)', 'str([Jt])'))),
    "formats_costs_with_commas": ("model_nn", cell("model_nn", MODEL_NN.replace(
        'str(Jt)', '"{:,.2f}".format(Jt)'))),
    "makes_the_train_step_count_infinite": ("model_nn", cell("model_nn", MODEL_NN.replace(
        "    return generated_image", """    for variable in tf.global_variables():
        if variable.op.name.startswith("beta1_power"):
            sess.run(variable.assign(0.0))
    return generated_image"""))),
    "sends_malformed_records": ("total_cost", cell("total_cost", """
import os
MALFORMED = [b'{"call": ["call0"], "result": {"value": 1}}', b'{"call": "call1", "result": {}}',
             b'{"call": "call2"}', b'[' * 100000 + b']' * 100000, b'{"call": "call3", "problem": NaN}',
             b'{"stage": ' + b'{"a": ' * 50000 + b'1' + b'}' * 50001, b'\\xff\\xfe not utf-8',
             b'{"call": "call4", "result": {"value": {"shape": [1e400], "float64": ""}}}']

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    for line in MALFORMED:
        for fd in range(3, 10):
            try:
                os.write(fd, line + b"\\n")
            except OSError:
                pass
    os._exit(0)""")),
    "prints_the_graders_environment": ("total_cost", cell("total_cost", """
import os

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    raise ValueError(repr(dict(os.environ)) + open("/proc/self/environ").read())""")),
    "swaps_the_weights_defaults": ("total_cost", cell("total_cost", """
def total_cost(J_content, J_style, beta = 40, alpha = 10):
    return alpha * J_content + beta * J_style""")),
    "saves_each_picture_before_its_step": ("model_nn", cell("model_nn", STALE_PICTURES)),
    # a right function too slow for the time limit, its cell announced again and again
    "keeps_announcing_its_cell": ("compute_content_cost", cell("compute_content_cost", """
import os, threading, time

def announce():
    while True:
        os.write(4, b'{"stage": "cell"}\\n')
        time.sleep(2)

threading.Thread(target=announce, daemon=True).start()
time.sleep(75)

def compute_content_cost(a_C, a_G):
    m, n_H, n_W, n_C = a_G.get_shape().as_list()
    return tf.reduce_sum(tf.square(a_C - a_G)) / (4 * n_H * n_W * n_C)""")),
    "asks_unix_sockets_for_the_answer": ("gram_matrix", cell("gram_matrix", """
import socket

def gram_matrix(A):
    answers = []
    for address in ("/dev/log", "/run/dbus/system_bus_socket", "\\0nst-answers"):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
                channel.connect(address)
                answers.append(channel.recv(100))
        except OSError as error:
            answers.append(repr(error))
    raise RuntimeError(f"asked for the answer: {answers}")""")),
    "reads_the_graders_keyring": ("total_cost", cell("total_cost", f"""
import ctypes
import pyseccomp  # only for the system calls' numbers

libc = ctypes.CDLL(None, use_errno=True)
KEYCTL, ADD_KEY = (pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) for name in ("keyctl", "add_key"))

def total_cost(J_content, J_style, alpha = 10, beta = 40):
    seen, value = [], ctypes.create_string_buffer(4096)
    key = libc.syscall(KEYCTL, 10, -3, b"user", {GRADER_KEY!r}.encode(), 0)  # search the session keyring
    seen.append(("search", key, ctypes.get_errno()))
    if key > 0:
        seen.append(value.raw[:libc.syscall(KEYCTL, 11, key, value, 4096)])  # read it
    for keyring in (-3, -4, -5):  # leave a key in the session, user and user session keyrings
        left = libc.syscall(ADD_KEY, b"user", {LEFT_BEHIND!r}.encode(), b"x", 1, keyring)
        seen.append(("add_key", left, ctypes.get_errno()))
    raise RuntimeError(f"keyring: {{seen}}")""")),
    "opens_doors_in_the_kernel": ("compute_layer_style_cost", cell("compute_layer_style_cost", """
import ctypes, errno, os
import pyseccomp  # only for the system calls' numbers

libc = ctypes.CDLL(None, use_errno=True)
DOORS = {"io_uring_setup": (16, 0), "userfaultfd": (0,), "unshare": (0x10000000,),
         "ptrace": (16, os.getppid(), 0, 0), "keyctl": (0, -3, 0), "bpf": (0, 0, 0),
         "perf_event_open": (0, 0, -1, -1, 0), "process_vm_readv": (os.getppid(), 0, 0, 0, 0, 0)}

def compute_layer_style_cost(a_S, a_G):
    opened = {}
    for name, arguments in DOORS.items():
        result = libc.syscall(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name), *arguments)
        opened[name] = "open" if result >= 0 else errno.errorcode[ctypes.get_errno()]
    raise RuntimeError(f"doors: {opened}")""")),
    "stalls_the_grader_with_a_scan_bomb": ("model_nn", cell("model_nn", MODEL_NN.replace(
        "    return generated_image", """    import io
    from PIL import Image
    out = io.BytesIO()  # a progressive JPEG, its last scan then repeated 5,000 times
    Image.new("RGB", (2048, 2048), "gray").save(out, "JPEG", progressive=True, quality=50)
    data = out.getvalue()
    last = data.rindex(b"\\xff\\xda")  # the last scan, up to the end-of-image marker
    with open(CONFIG.OUTPUT_DIR + "generated_image.jpg", "wb") as bomb:
        bomb.write(data[:-2] + data[last:-2] * 5000 + data[-2:])
    return generated_image"""))),
    "forges_the_summary": ("gram_matrix", cell("gram_matrix", """
import json, os
FAKE = "\\r\\n".join(["PASS  gram_matrix: 5 checks"] * 3 + ["5/5 graded functions pass"])
os.write(4, json.dumps({"problem": "\\x1b[2K\\r" + FAKE + "\\u2028\\x1b[1A\\x85"}).encode() + b"\\n")
os._exit(0)""")),
}


def with_graded_cell_replaced(name, source, path, notebook=ROOT / "nst_assignment.ipynb"):
    """Write to `path` a copy of `notebook` (ours) with the graded cell for `name` replaced
    (None: removed)."""
    notebook = read_notebook(notebook)
    header = f"# GRADED FUNCTION: {name}"
    index = next(i for i, c in enumerate(notebook["cells"]) if cell_source(c).startswith(header))
    if source is None:
        del notebook["cells"][index]
    else:
        notebook["cells"][index]["source"] = source
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def make_release(path):
    subprocess.run([sys.executable, "-m", "grading", "release", str(ROOT / "nst_assignment.ipynb"),
                    str(path)], cwd=ROOT, check=True, timeout=60)
    return path


def project_copy(folder):
    """A copy of the project in `folder` (no virtual environment, outputs or caches), where
    attacks on the grader's files can be tried."""
    shutil.copytree(ROOT, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "output", "__pycache__", ".pytest_cache", "*.mat"))
    return folder


KEYRING_SECRET = "keyring-secret-5c1d"


def plant_graders_key():
    """Give this process (and so every grading it starts) a session keyring of its own holding
    the key GRADER_KEY = KEYRING_SECRET, as a systemd service or a PAM login has; once."""
    import ctypes
    import pyseccomp
    from grading import keyring

    if getattr(plant_graders_key, "done", False):
        return
    keyring.join_new_session_keyring()
    add_key = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "add_key")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(add_key, b"user", GRADER_KEY.encode(), KEYRING_SECRET.encode(),
                    len(KEYRING_SECRET), keyring.KEY_SPEC_SESSION_KEYRING) < 0:
        raise OSError(ctypes.get_errno(), "add_key failed")
    plant_graders_key.done = True


def keys_left_behind():
    """Lines of /proc/keys naming LEFT_BEHIND, and /proc/key-users lines of workers' uids."""
    from grading.confinement import WORKER_UID_BASE

    keys = [line for line in open("/proc/keys") if LEFT_BEHIND in line]
    users = [line for line in open("/proc/key-users")
             if int(line.split(":")[0]) >= WORKER_UID_BASE]
    return keys + users
