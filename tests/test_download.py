"""`python -m nst_utils download` against a server on 127.0.0.1 (no internet needed), and
`python -m nst_utils verify`.

A file with a published sum is a few MB of random bytes whose MD5 each test adds to the table of
releases (the real 510 MB file is not needed); a file with VGG-19's structure but another sum is
a fixture at the real conv widths without the fc layers (80 MB, written once).
"""
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import nst_utils
from conftest import ROOT
from grading.mat_fixture import write_vgg19_mat

PUBLISHED_SUMS = ("106118b7cf60435e6d8e04f6a6dc3657", "8ee3263992981a1d26e73b3ca028a123")


@pytest.fixture
def published(monkeypatch):
    """Bytes standing in for the weights file, their MD5 added to nst_utils.VGG19_RELEASES."""
    data = np.random.default_rng(19).bytes(3 * 2**20 + 123)
    monkeypatch.setitem(nst_utils.VGG19_RELEASES, hashlib.md5(data).hexdigest(),
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
    code = nst_utils.main(["download", "--url", url, "--to", str(destination)])
    return code, capsys.readouterr()


def verify(path, capsys):
    code = nst_utils.main(["verify", str(path)])
    return code, capsys.readouterr()


def test_the_published_sums_are_matconvnets():
    assert tuple(nst_utils.VGG19_RELEASES) == PUBLISHED_SUMS
    assert [name for name, _ in nst_utils.VGG19_RELEASES.values()] == [
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
    assert nst_utils.md5_of(tmp_path / "file", chunk_size=1000) == hashlib.md5(data).hexdigest()


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


def test_unreachable_url_gives_clear_error_and_nonzero_exit(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "nst_utils", "download", "--url", "http://127.0.0.1:9/vgg.mat",
         "--to", str(tmp_path / "vgg.mat")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1
    assert "Could not get the VGG-19 weights from http://127.0.0.1:9/vgg.mat" in finished.stderr
    assert "could not reach the server" in finished.stderr
    assert not (tmp_path / "vgg.mat").exists()


def test_missing_weights_message_names_the_download_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m nst_utils download"):
        nst_utils.load_vgg_model(str(tmp_path / "absent.mat"))


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
