"""`python -m nst_utils download` against a server on 127.0.0.1 (no internet needed).

The served file is a few MB of random bytes whose MD5 each test adds to the table of published
sums (the real 510 MB file is not needed).
"""
import hashlib
import http.server
import subprocess
import sys
import threading

import numpy as np
import pytest

import nst_utils
from conftest import ROOT


@pytest.fixture
def published(monkeypatch):
    """Bytes standing in for the weights file, their MD5 added to nst_utils.VGG19_MD5."""
    data = np.random.default_rng(19).bytes(3 * 2**20 + 123)
    monkeypatch.setitem(nst_utils.VGG19_MD5, hashlib.md5(data).hexdigest(), "the test release")
    return data


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


def test_clean_download_is_checked_and_lands_under_final_name(serve, published, tmp_path, capsys):
    server = serve(published)
    destination = tmp_path / "pretrained-model" / "imagenet-vgg-verydeep-19.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 0 and f"Downloaded and checked '{destination}' (the test release)" in out.out
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


def test_download_with_another_md5_is_kept_aside_not_under_final_name(serve, published,
                                                                       tmp_path, capsys):
    corrupt = published[:-1] + b"x"  # one byte changed
    server = serve(corrupt)
    destination = tmp_path / "vgg.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 1 and "The download is not the VGG-19 file" in out.err
    assert f"has MD5 {hashlib.md5(corrupt).hexdigest()}, not that of a published" in out.err
    assert "106118b7cf60435e6d8e04f6a6dc3657" in out.err  # the sums it should have had
    assert not destination.exists()
    assert (tmp_path / "vgg.mat.rejected").read_bytes() == corrupt


def test_md5_is_read_in_chunks_and_matches_hashlib(tmp_path):
    data = np.random.default_rng(1).bytes(10_001)
    (tmp_path / "file").write_bytes(data)
    assert nst_utils.md5_of(tmp_path / "file", chunk_size=1000) == hashlib.md5(data).hexdigest()


def test_existing_file_with_published_md5_is_left_untouched(serve, published, tmp_path, capsys):
    destination = tmp_path / "vgg.mat"
    destination.write_bytes(published)
    server = serve(b"something else entirely")
    code, out = run(server.url, destination, capsys)
    assert code == 0 and "already there and checked (the test release): nothing to do" in out.out
    assert server.requests == []
    assert destination.read_bytes() == published


def test_existing_file_with_other_md5_is_reported_and_not_overwritten(serve, published,
                                                                      tmp_path, capsys):
    destination = tmp_path / "vgg.mat"
    destination.write_bytes(b"my own half-finished copy")
    server = serve(published)
    code, out = run(server.url, destination, capsys)
    assert code == 1 and "left as it is: move or delete it" in out.err
    assert "has MD5 " in out.err and server.requests == []
    assert destination.read_bytes() == b"my own half-finished copy"


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
