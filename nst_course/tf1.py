"""TensorFlow, imported quietly, as its 1.x API in graph mode, with TF 1.x's seed rule: `tf`.

Importing this module starts TensorFlow once for the process; nst_utils gives its `tf` to the
student.
"""
import contextlib
import ctypes
import os
import re
import sys
import tempfile

# TensorFlow's C++ start-up notices go straight to the process's stderr, where Jupyter shows them
# in a student's cell as if they were errors: absl's "All log messages before absl::InitializeLog()
# ...", the CUDA stub's "Could not find cuda drivers" and, on first use, "failed call to cuInit"
# on a machine without an NVIDIA driver, oneDNN's and the CPU features' notices. They are held back
# while TensorFlow starts, and any other line is passed on; after that, TF_CPP_MIN_LOG_LEVEL 2
# lets TensorFlow's C++ errors through and hides its info and warning lines.
START_UP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\)|cudart_stub\.cc.*Could not find cuda "
    r"drivers|failed call to cuInit|oneDNN custom operations are on|cpu_feature_guard\.cc|"
    r"^To enable the following instructions:")


@contextlib.contextmanager
def _start_up_notices_held_back():
    """What is written to file descriptor 2 inside the block is kept, then passed on to
    sys.stderr without TensorFlow's START_UP_NOTICES."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):  # no stderr at all: nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not START_UP_NOTICES.search(line)))


def nvidia_driver_present():
    """Whether NVIDIA's driver library is there (without it TensorFlow sees no GPU)."""
    try:
        ctypes.CDLL("libcuda.so.1")  # the driver's library, which TensorFlow loads for a GPU
    except OSError:
        return False
    return True


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ logs: errors only
with _start_up_notices_held_back():
    import tensorflow.compat.v1 as tf
    from tensorflow.python.framework import ops as _ops
    from tensorflow.python.framework import random_seed as _random_seed

    if sys.platform == "linux" and not nvidia_driver_present():
        # TensorFlow's first look for a GPU logs the failed cuInit: let it look now. (Not with a
        # driver: CUDA must not start in a process that forks, as the grader's sandbox does.)
        tf.config.list_physical_devices("GPU")
    tf.get_logger().setLevel("ERROR")  # no deprecation notices for the TF1 API the course teaches
    tf.disable_v2_behavior()


# TensorFlow 1.x gave a random op with no seed of its own, under a graph-level seed, the
# graph's operation count at that moment (Graph.version) as its op seed; TensorFlow 2 counts
# seeded ops per graph instead, so the assignment's test cells would print other numbers than
# their "Expected Output". This wrapper restores the 1.x rule; it always wraps TF's original.
_tf2_get_seed = getattr(_random_seed.get_seed, "tf2_get_seed", _random_seed.get_seed)


def _tf1_get_seed(op_seed):
    graph = _ops.get_default_graph()
    if op_seed is None and graph.seed is not None and not tf.executing_eagerly():
        op_seed = graph.version
    return _tf2_get_seed(op_seed)


_tf1_get_seed.tf2_get_seed = _tf2_get_seed
_random_seed.get_seed = _tf1_get_seed
