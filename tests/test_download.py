"""`python -m nst_utils download` against a server on 127.0.0.1 (no internet needed).

The served file is a VGG-19 fixture at the real conv widths (fc layers left out), about 80 MB.
"""
import http.server
import subprocess
import sys
import threading

import pytest

import nst_utils
from conftest import ROOT
from grading.mat_fixture import write_vgg19_mat


@pytest.fixture(scope="module")
def full_width_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "imagenet-vgg-verydeep-19.mat"
    write_vgg19_mat(path, width_scale=1.0, with_fc=False)
    return path.read_bytes()


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


def test_clean_download_is_verified_and_lands_under_final_name(serve, full_width_weights,
                                                                tmp_path, capsys):
    server = serve(full_width_weights)
    destination = tmp_path / "pretrained-model" / "imagenet-vgg-verydeep-19.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 0 and "Downloaded and verified" in out.out
    assert destination.read_bytes() == full_width_weights
    assert not (tmp_path / "pretrained-model" / "imagenet-vgg-verydeep-19.mat.part").exists()


def test_dropped_connection_keeps_part_and_next_run_resumes(serve, full_width_weights, tmp_path,
                                                            capsys):
    half = len(full_width_weights) // 2
    server = serve(full_width_weights, drop_after=half)
    destination = tmp_path / "vgg.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 1 and "connection closed after" in out.err and "again to resume" in out.err
    assert not destination.exists()
    assert (tmp_path / "vgg.mat.part").stat().st_size == half
    code, out = run(server.url, destination, capsys)
    assert code == 0, out.err
    assert server.requests == [None, f"bytes={half}-"]
    assert destination.read_bytes() == full_width_weights


def test_server_without_range_support_restarts_cleanly(serve, full_width_weights, tmp_path,
                                                       capsys):
    server = serve(full_width_weights, ranges=False)
    destination = tmp_path / "vgg.mat"
    (tmp_path / "vgg.mat.part").write_bytes(b"stale bytes from an older attempt")
    code, out = run(server.url, destination, capsys)
    assert code == 0, out.err
    assert destination.read_bytes() == full_width_weights


def test_corrupt_download_is_kept_aside_not_under_final_name(serve, full_width_weights, tmp_path,
                                                             capsys):
    corrupt = full_width_weights[: len(full_width_weights) // 3]
    server = serve(corrupt)
    destination = tmp_path / "vgg.mat"
    code, out = run(server.url, destination, capsys)
    assert code == 1 and "not a valid VGG-19 model" in out.err
    assert not destination.exists()
    assert (tmp_path / "vgg.mat.rejected").read_bytes() == corrupt


def test_tiny_widths_fail_verification(serve, tmp_path, capsys):
    small = write_vgg19_mat(tmp_path / "small.mat", with_fc=False).read_bytes()
    code, out = run(serve(small).url, tmp_path / "vgg.mat", capsys)
    assert code == 1 and "conv1_1 has 2 output channels; VGG-19 has 64" in out.err
    assert not (tmp_path / "vgg.mat").exists()


def test_existing_valid_file_is_left_untouched(serve, full_width_weights, tmp_path, capsys):
    destination = tmp_path / "vgg.mat"
    destination.write_bytes(full_width_weights)
    server = serve(b"something else entirely")
    code, out = run(server.url, destination, capsys)
    assert code == 0 and "already there and valid: nothing to do" in out.out
    assert server.requests == []
    assert destination.read_bytes() == full_width_weights


def test_existing_invalid_file_is_reported_and_not_overwritten(serve, full_width_weights,
                                                               tmp_path, capsys):
    destination = tmp_path / "vgg.mat"
    destination.write_bytes(b"my own half-finished copy")
    code, out = run(serve(full_width_weights).url, destination, capsys)
    assert code == 1 and "left as it is: move or delete it" in out.err
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
