"""Downloads against a loopback HTTP server made in the test (offline): checksums, resume, safe extraction, CLI."""
from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mgsrgan.errors import VGGWeightsError
from mgsrgan.io import download
from mgsrgan.io import weightfiles
from mgsrgan.cli.download import main
from mgsrgan.io.download import DownloadError, download_div2k, fetch, safe_extract
from mgsrgan.io.weightfiles import resolve_imagenet_file


class FileServer:
    """Serves `files` (path -> bytes) on 127.0.0.1; honours `Range: bytes=N-` unless told not to; records requests.

    truncate_at: send only this many body bytes while announcing the full Content-Length (a dropped connection).
    """

    def __init__(self, files: dict[str, bytes], *, honour_range: bool = True, truncate_at: int | None = None):
        self.files, self.honour_range, self.truncate_at = files, honour_range, truncate_at
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                asked = self.headers.get("Range")
                server.requests.append((self.path, asked))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and server.honour_range else 0
                if start >= len(body) and asked and server.honour_range:
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:server.truncate_at if server.truncate_at else len(body)])

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def closed_port_url() -> str:
    with socket.socket() as sock:  # bind, read the port, close: nothing listens there afterwards
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


PAYLOAD = make_zip({f"DIV2K_train_HR/{i:04d}.png": bytes([i]) * 3000 for i in range(1, 4)})
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_with_checksum(tmp_path):
    dest = tmp_path / "sub" / "a.zip"
    with FileServer({"/a.zip": PAYLOAD}) as server:
        assert fetch(server.url + "/a.zip", dest, sha256=SHA, progress=False) == dest
        assert fetch(server.url + "/a.zip", tmp_path / "b.zip", sha256_prefix=SHA[:8], progress=False).exists()
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "sub" / "a.zip.part").exists()
    assert server.requests == [("/a.zip", None)] * 2


def test_checksum_mismatch_leaves_nothing(tmp_path):
    dest = tmp_path / "a.zip"
    with FileServer({"/a.zip": PAYLOAD}) as server, pytest.raises(DownloadError, match="does not match") as err:
        fetch(server.url + "/a.zip", dest, sha256_prefix="00000000", progress=False)
    assert server.url + "/a.zip" in str(err.value) and str(dest) in str(err.value)
    assert not dest.exists() and not (tmp_path / "a.zip.part").exists()


@pytest.mark.parametrize("honour_range", [True, False])
def test_resume_partial_file(tmp_path, honour_range):
    dest = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD[:1000])
    with FileServer({"/a.zip": PAYLOAD}, honour_range=honour_range) as server:
        fetch(server.url + "/a.zip", dest, sha256=SHA, progress=False)
    assert server.requests == [("/a.zip", "bytes=1000-")]  # Range asked either way; a 200 reply restarts
    assert dest.read_bytes() == PAYLOAD


def test_part_longer_than_file_restarts(tmp_path):
    (tmp_path / "a.zip.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    with FileServer({"/a.zip": PAYLOAD}) as server:
        fetch(server.url + "/a.zip", tmp_path / "a.zip", sha256=SHA, progress=False)
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]  # 416, then from scratch
    assert (tmp_path / "a.zip").read_bytes() == PAYLOAD


def test_dropped_connection_keeps_part_for_resume(tmp_path):
    dest = tmp_path / "a.zip"
    with FileServer({"/a.zip": PAYLOAD}, truncate_at=2000) as server, pytest.raises(DownloadError, match="2000 of"):
        fetch(server.url + "/a.zip", dest, progress=False)
    assert not dest.exists() and (tmp_path / "a.zip.part").read_bytes() == PAYLOAD[:2000]
    with FileServer({"/a.zip": PAYLOAD}) as server:
        fetch(server.url + "/a.zip", dest, sha256=SHA, progress=False)
    assert server.requests == [("/a.zip", "bytes=2000-")] and dest.read_bytes() == PAYLOAD


def test_unreachable_and_missing_urls(tmp_path):
    url = closed_port_url()
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "file.bin", progress=False)
    assert url in str(err.value) and str(tmp_path / "file.bin") in str(err.value) and "by hand" in str(err.value)
    with FileServer({}) as server, pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url + "/nothing.zip", tmp_path / "n.zip", progress=False)


def test_safe_extract_rejects_escaping_entries(tmp_path):
    for bad in ("../evil.txt", "/abs/evil.txt", "DIV2K/../../evil.txt"):
        archive = tmp_path / "bad.zip"
        archive.write_bytes(make_zip({"ok.txt": b"fine", bad: b"evil"}))
        out = tmp_path / "out"
        with pytest.raises(DownloadError, match="refusing entry"):
            safe_extract(archive, out)
        assert not (out / "ok.txt").exists() and not (tmp_path / "evil.txt").exists()  # nothing written


def test_safe_extract_checks_image_count(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(PAYLOAD)
    with pytest.raises(DownloadError, match="holds 3 PNG images, expected 800"):
        safe_extract(archive, tmp_path / "out", expected_images=800)
    files = safe_extract(archive, tmp_path / "out", expected_images=3)
    assert sorted(f.name for f in files) == ["0001.png", "0002.png", "0003.png"]


def test_safe_extract_reports_crc_damage(tmp_path):
    archive = tmp_path / "a.zip"
    data = bytearray(PAYLOAD)
    at = data.index(bytes([2]) * 3000)  # stored (uncompressed) body of 0002.png
    data[at] = 7
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="damaged zip .*CRC"):
        safe_extract(archive, tmp_path / "out")


def test_div2k_download_extract_and_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "DIV2K_ARCHIVES", {"train_hr": ("DIV2K_train_HR.zip", 3)})
    with FileServer({"/DIV2K_train_HR.zip": PAYLOAD}) as server:
        folders = download_div2k(tmp_path, ["train_hr"], base_url=server.url + "/", progress=False)
        assert folders == [tmp_path / "DIV2K_train_HR"]
        assert (tmp_path / "DIV2K_train_HR" / "0002.png").read_bytes() == bytes([2]) * 3000
        assert not (tmp_path / "DIV2K_train_HR.zip").exists()  # deleted after extraction by default
        argv = ["download", "div2k", "--dest", str(tmp_path), "--subset", "train_hr", "--base-url",
                server.url + "/", "--no-progress"]
        assert main(argv) == 0  # already extracted: skipped, no request
        assert len(server.requests) == 1
    assert capsys.readouterr().out.strip() == str(tmp_path / "DIV2K_train_HR")
    port_url = closed_port_url().removesuffix("file.bin")
    assert main(["download", "div2k", "--dest", str(tmp_path / "new"), "--base-url", port_url,
                 "--subset", "train_hr", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and port_url + "DIV2K_train_HR.zip" in error and error.count("\n") == 1


def test_vgg_weights_downloaded_into_hub_cache(tmp_path, monkeypatch):
    weights = b"fake vgg19 weights" * 100
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(weightfiles, "IMAGENET_SHA256_PREFIX", hashlib.sha256(weights).hexdigest()[:8])
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with FileServer({"/vgg19.pth": weights}) as server:
        monkeypatch.setattr(weightfiles, "IMAGENET_URL", server.url + "/vgg19.pth")
        assert resolve_imagenet_file(progress=False) == cached and cached.read_bytes() == weights
        assert resolve_imagenet_file(progress=False) == cached  # second call: from the cache
        assert len(server.requests) == 1
    cached.unlink()
    monkeypatch.setattr(weightfiles, "IMAGENET_URL", closed_port_url())
    with pytest.raises(VGGWeightsError) as err:
        resolve_imagenet_file(progress=False)
    for needed in ("vgg19-dcbb9e9d.pth", weightfiles.IMAGENET_URL, str(cached), "loss.vgg_path",
                   "--set loss.vgg_weights=stlpips --set loss.content_layer=5_3"):  # the offline alternative
        assert needed in str(err.value)


def test_vgg_download_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with FileServer({"/vgg19.pth": b"tampered"}) as server:
        monkeypatch.setattr(weightfiles, "IMAGENET_URL", server.url + "/vgg19.pth")
        with pytest.raises(VGGWeightsError, match="does not match the expected dcbb9e9d"):
            resolve_imagenet_file(progress=False)
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth").exists()
