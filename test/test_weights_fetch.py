"""Checkpoint downloads against a local HTTP server (loopback): progress, resume, nothing partial kept,
and make demo's choice of profile never starts a download a run could not use."""
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from sam_ovseg_ros.core import weights
from sam_ovseg_ros.core.weights import WeightSpec
from sam_ovseg_ros.tools import demo

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    cut_after: int | None = None  # the next response stops after this many bytes (a dropped link)
    ranges: list = []

    def do_GET(self):  # noqa: N802
        start = 0
        rng = self.headers.get("Range")
        _Handler.ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if _Handler.cut_after is not None:
            body, _Handler.cut_after = body[:_Handler.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Handler.ranges = []
    yield f"http://127.0.0.1:{srv.server_address[1]}/ckpt.pth"
    srv.shutdown()
    srv.server_close()


def test_interrupted_download_resumes_and_is_verified(server, tmp_path):
    spec = WeightSpec("ckpt.pth", server, hashlib.md5(PAYLOAD).hexdigest())
    lines = []
    _Handler.cut_after = 300_000
    assert weights.fetch(spec, tmp_path, lines.append, timeout=5) is None
    assert not (tmp_path / "ckpt.pth").exists()  # a partial file is never the checkpoint
    assert (tmp_path / "ckpt.pth.part").stat().st_size == 300_000
    assert any("run again to resume" in ln for ln in lines)
    got = weights.fetch(spec, tmp_path, lines.append, timeout=5)
    assert got == tmp_path / "ckpt.pth" and got.read_bytes() == PAYLOAD
    assert _Handler.ranges == [None, "bytes=300000-"]
    assert any("resuming at 0.3 MB" in ln and "1.0 MB" in ln for ln in lines)
    assert not (tmp_path / "ckpt.pth.part").exists()


def test_wrong_checksum_is_deleted_not_kept(server, tmp_path):
    spec = WeightSpec("ckpt.pth", server, "0" * 32)
    lines = []
    assert weights.fetch(spec, tmp_path, lines.append, timeout=5) is None
    assert not (tmp_path / "ckpt.pth").exists() and not (tmp_path / "ckpt.pth.part").exists()
    assert any("does not have md5" in ln for ln in lines)


def test_demo_never_downloads_sam_when_ovseg_is_missing(tmp_path, monkeypatch):
    """OVSeg (Google Drive) missing: tiny at once, the file and its source named, no SAM download tried."""
    monkeypatch.setenv("SAM_OVSEG_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SAM_OVSEG_NO_DOWNLOAD", raising=False)
    tried = []
    monkeypatch.setattr(weights, "fetch", lambda spec, *a, **k: tried.append(spec.filename))
    lines = []
    profile, params = demo.choose_profile(lines.append)
    assert profile == "tiny" and params["profile"] == "tiny"
    assert tried == []
    text = "\n".join(lines)
    assert f"missing checkpoint {Path(tmp_path) / weights.OVSEG_FILE}" in text and "drive.google.com" in text
