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


def test_demo_never_downloads_sam_when_ovseg_cannot_be_had(tmp_path, monkeypatch):
    """OVSeg (Google Drive) first: when it cannot be had, tiny at once, the file and its source named, and no
    SAM download is started for a run that would not use it."""
    monkeypatch.setenv("SAM_OVSEG_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SAM_OVSEG_NO_DOWNLOAD", raising=False)
    tried = []
    monkeypatch.setattr(weights, "fetch", lambda spec, *a, **k: tried.append(spec.filename))  # returns None
    lines = []
    profile, params = demo.choose_profile(lines.append)
    assert profile == "tiny" and params["profile"] == "tiny"
    assert tried == [weights.OVSEG_FILE]
    text = "\n".join(lines)
    assert f"missing checkpoint {Path(tmp_path) / weights.OVSEG_FILE}" in text and "drive.google.com" in text
    monkeypatch.setenv("SAM_OVSEG_NO_DOWNLOAD", "1")  # offline on purpose: nothing is tried
    tried.clear()
    assert demo.choose_profile(lines.append)[0] == "tiny" and tried == []


def test_demo_takes_the_smallest_sam_unless_a_larger_one_is_there(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_OVSEG_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SAM_OVSEG_NO_DOWNLOAD", raising=False)
    tried = []

    def fake(spec, folder, log, **k):  # as if the download worked
        tried.append(spec.filename)
        (folder / spec.filename).write_bytes(b"x")
        return folder / spec.filename

    monkeypatch.setattr(weights, "fetch", fake)
    assert demo.choose_profile(print) == ("default", {"profile": "default", "sam.model_type": "vit_b",
                                                      "weights_dir": str(tmp_path)})
    assert tried == [weights.OVSEG_FILE, weights.SAM_FILES["vit_b"]]
    (tmp_path / weights.SAM_FILES["vit_h"]).write_bytes(b"x")
    tried.clear()
    assert demo.choose_profile(print)[1]["sam.model_type"] == "vit_h" and tried == []


# ------------------------------------------------------------------------------------ Google Drive, on loopback
FILE_ID = "1cn-ohxgXDrDfkzC1QdO-fiTEST"
CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p><p>ovseg.pth (1M) is too large for Google to scan.</p>
<form id="download-form" action="{base}/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="5e1f-uuid"></form>
</body></html>"""


class _Drive(http.server.BaseHTTPRequestHandler):
    """Drive as it answers a large file: /uc gives the confirm page; /download with its fields gives the file
    (with Range); ``quota`` makes /uc answer a page without a form."""
    cut_after: int | None = None
    quota = False
    seen: list = []

    def do_GET(self):  # noqa: N802
        from urllib.parse import parse_qs, urlparse

        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        _Drive.seen.append((u.path, q, self.headers.get("Range")))
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if u.path == "/uc" and q.get("id") == FILE_ID:
            page = ("<html><head><title>Quota exceeded</title></head><body>Too many users</body></html>"
                    if _Drive.quota else CONFIRM_PAGE.format(base=base, id=FILE_ID)).encode()
            self._send(200, page, "text/html; charset=utf-8")
        elif u.path == "/download" and q == {"id": FILE_ID, "export": "download", "confirm": "t", "uuid": "5e1f-uuid"}:
            rng = self.headers.get("Range")
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            body = PAYLOAD[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if _Drive.cut_after is not None:
                body, _Drive.cut_after = body[:_Drive.cut_after], None
            self.wfile.write(body)
        else:
            self._send(404, b"<html>not found</html>", "text/html")

    def _send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def drive():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drive)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Drive.seen, _Drive.quota, _Drive.cut_after = [], False, None
    yield f"http://127.0.0.1:{srv.server_address[1]}/uc?export=download&id={FILE_ID}"
    srv.shutdown()
    srv.server_close()


def test_drive_download_passes_the_confirm_page_resumes_and_checks_the_md5_prefix(drive, tmp_path):
    spec = WeightSpec("ovseg.pth", drive, hashlib.md5(PAYLOAD).hexdigest()[:6])  # only a prefix is published
    lines = []
    _Drive.cut_after = 400_000
    assert weights.fetch(spec, tmp_path, lines.append, timeout=5) is None  # the link drops
    assert (tmp_path / "ovseg.pth.part").stat().st_size == 400_000 and not (tmp_path / "ovseg.pth").exists()
    got = weights.fetch(spec, tmp_path, lines.append, timeout=5)
    assert got == tmp_path / "ovseg.pth" and got.read_bytes() == PAYLOAD
    downloads = [(p, r) for p, q, r in _Drive.seen if p == "/download"]
    assert [p for p, _, _ in _Drive.seen] == ["/uc", "/download", "/uc", "/download"]
    assert downloads == [("/download", None), ("/download", "bytes=400000-")]
    assert any("resuming at 0.4 MB" in ln for ln in lines) and any("downloaded and verified" in ln for ln in lines)


def test_drive_without_the_file_says_why_and_keeps_nothing(drive, tmp_path):
    _Drive.quota = True
    lines = []
    assert weights.fetch(WeightSpec("ovseg.pth", drive, "526080"), tmp_path, lines.append, timeout=5) is None
    assert "without the file (Quota exceeded" in lines[-1] and "browser" in lines[-1]
    assert "nothing downloaded" in lines[-1] and ".part" not in lines[-1]  # no partial file to speak of
    assert not list(tmp_path.iterdir())
    _Drive.quota = False
    lines.clear()
    assert weights.fetch(WeightSpec("ovseg.pth", drive, "526080"), tmp_path, lines.append, timeout=5) is None
    assert "does not have md5 526080" in lines[-1] and not list(tmp_path.iterdir())  # another file: deleted


def test_the_confirm_link_of_older_pages():
    page = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbC_9&amp;id=X">Download anyway</a>'
    assert weights.confirmed_url(page, "https://drive.google.com/uc?export=download&id=X") == \
        "https://drive.google.com/uc?export=download&id=X&confirm=AbC_9"
