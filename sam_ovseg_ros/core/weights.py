"""Where the real checkpoints come from, and checking that a file on disk is the one expected.

A missing or wrong file fails start-up with a message naming the file, its source and its
checksum. Hashing a multi-GB file takes seconds, so a verified (path, size, mtime) is
remembered in ``<weights_dir>/.verified.json`` and not hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlparse


class WeightsError(RuntimeError):
    """A checkpoint is missing, corrupt or not the expected file; the message says where to get it."""


@dataclass(frozen=True)
class WeightSpec:
    filename: str
    url: str
    md5: str  # full digest, a prefix when only that is published, "" when none is
    note: str = ""


KNOWN: dict[str, WeightSpec] = {s.filename: s for s in (
    WeightSpec("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
               "4b8939a88964f0f4ff5f5b2642c598a6", "SAM ViT-H, 2.4 GB"),
    WeightSpec("sam_vit_l_0b3195.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
               "0b3195507c641ddb6910d2bb5adee89c", "SAM ViT-L, 1.2 GB"),
    WeightSpec("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
               "01ec64d29a2fca3f0661936605ae66f8", "SAM ViT-B, 358 MB"),
    *(WeightSpec(f"sam2.1_hiera_{size}.pt", f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_"
                 f"{size}.pt", "", f"SAM 2.1 hiera-{size}, ~{mb} MB, Apache-2.0; no checksum is published, the "
                 "loader checks every key and shape")
      for size, mb in (("tiny", 156), ("small", 184), ("base_plus", 323), ("large", 898))),
    WeightSpec("ovseg_swinbase_vitL14_ft_mpt.pth",
               "https://drive.google.com/uc?export=download&id=1cn-ohxgXDrDfkzC1QdO-fi8IjbjXmgKy",
               "526080", "OVSeg Swin-B + CLIP ViT-L/14 (fine-tuned, mask prompt tuned), ~2 GB, CC BY-NC 4.0; "
                         "Google Drive id 1cn-ohxgXDrDfkzC1QdO-fi8IjbjXmgKy (fetched with Drive's confirm step)"),
)}

SAM_FILES = {"vit_h": "sam_vit_h_4b8939.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_b": "sam_vit_b_01ec64.pth"}
OVSEG_FILE = "ovseg_swinbase_vitL14_ft_mpt.pth"


def describe(filename: str) -> str:
    spec = KNOWN.get(filename)
    if spec is None:
        return "It is not one of the released files this package knows; check the path."
    return f"Get {spec.filename} ({spec.note}) from {spec.url}" + (f" (md5 {spec.md5}...)." if spec.md5 else ".")


def md5_of(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, spec: WeightSpec | None = None) -> None:
    """Raise WeightsError unless ``path`` exists and (for a known file) has the published md5."""
    path = Path(path).expanduser()
    spec = spec or KNOWN.get(path.name)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}. " + (describe(spec.filename) if spec else
                                                                 "Set the checkpoint parameter to an existing file."))
    if spec is None or not spec.md5:  # unknown file, or no published checksum
        return
    st = path.stat()
    stamp_file = path.parent / ".verified.json"
    key = f"{path.name}:{st.st_size}:{int(st.st_mtime)}"
    try:
        seen = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        seen = {}
    if seen.get(key) == spec.md5:
        return
    digest = md5_of(path)
    if not digest.startswith(spec.md5):
        raise WeightsError(f"{path} has md5 {digest}, expected {spec.md5}...: a partial or different file. "
                           + describe(spec.filename))
    seen[key] = spec.md5
    try:
        stamp_file.write_text(json.dumps(seen))
    except OSError:
        pass  # read-only weights folder: verify again next time


def check_layout(own: dict, loaded: dict, what: str) -> None:
    """Raise WeightsError unless ``loaded`` has exactly the keys and shapes of the model's ``own`` state_dict,
    naming a few of each kind of difference (a foreign or truncated checkpoint is refused, never half-loaded)."""
    missing = [k for k in own if k not in loaded]
    unexpected = [k for k in loaded if k not in own]
    shapes = [f"{k}: {tuple(loaded[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
              if k in loaded and tuple(loaded[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        detail = "; ".join(f"{len(v)} {n} (e.g. {', '.join(v[:5])})" for n, v in
                           (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if v)
        raise WeightsError(f"{what}: {detail}")


def save_state_dict(state_dict: dict, path: Path) -> Path:
    """Write a checkpoint atomically (a reader never sees half a file)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state_dict, tmp)
    tmp.replace(path)
    return path


def is_drive(url: str) -> bool:
    """A Google Drive download (``.../uc?export=download&id=...``): large files come behind a confirm page."""
    return "/uc?" in url and "id=" in url


class _FormParser(HTMLParser):
    """The download form of Drive's "can't scan this file for viruses" page: its action and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action, self.fields, self._in_form = None, {}, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None and "download" in (a.get("action") or ""):
            self.action, self._in_form = a["action"], True
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def confirmed_url(page: str, url: str) -> str:
    """The real download URL behind Drive's confirm page ``page`` (fetched from ``url``).

    Drive answers a large file's ``uc?export=download`` with an HTML warning instead of the file: a form
    (action ``drive.usercontent.google.com/download``, fields id, export, confirm, uuid) in today's page,
    a ``confirm=<token>`` link in older ones. Anything else (a quota or sign-in page) raises OSError.
    """
    form = _FormParser()
    form.feed(page)
    if form.action:
        return urljoin(url, form.action) + "?" + urlencode(form.fields)
    m = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if m:
        return url + f"&confirm={m.group(1)}"
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    raise OSError(f"Google Drive sent a page without the file ({(title.group(1).strip() if title else 'no title')[:80]}"
                  "; too many downloads today, or the file moved): fetch it in a browser")


def can_fetch(spec: WeightSpec) -> bool:
    """Whether ``fetch`` can download the file (a direct URL, or Google Drive through its confirm page)."""
    return spec.url.startswith(("https://", "http://"))


def _resolve(url: str, timeout: float) -> str:
    """``url``, or for Google Drive the URL that sends the file itself (past the confirm page)."""
    if not is_drive(url):
        return url
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        if "text/html" not in resp.headers.get("Content-Type", ""):
            return resp.geturl()  # a small file comes at once (read again below, with a Range when resuming)
        page = resp.read(1 << 20).decode("utf-8", "replace")
    return confirmed_url(page, url)


def fetch(spec: WeightSpec, folder: Path, log=print, timeout: float = 20.0) -> Path | None:
    """Download ``spec`` into ``folder``; None (and a log line saying why) when it cannot be had.

    The download goes to ``<file>.part`` and resumes from it (HTTP Range) when run again; progress
    (bytes, total, rate) is logged every few seconds. Only a file whose size and md5 match is moved
    to its real name, so a partial or corrupt download is never taken for the checkpoint.
    """
    if not can_fetch(spec):
        log(f"{spec.filename} cannot be downloaded automatically. {describe(spec.filename)}")
        return None
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / spec.filename
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    try:
        url = _resolve(spec.url, timeout)
        req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if "text/html" in resp.headers.get("Content-Type", ""):
                raise OSError(f"{urlparse(url).netloc} sent a web page, not the file")
            if have and resp.status != 206:  # the server ignored the range: start over
                have = 0
            total = have + int(resp.headers.get("Content-Length", 0) or 0)
            log(f"downloading {spec.url} ({_mb(total)} MB{f', resuming at {_mb(have)} MB' if have else ''})")
            _copy_with_progress(resp, part, have, total, spec.filename, log)
    except OSError as exc:
        got = part.stat().st_size if part.is_file() else 0
        kept = f"{_mb(got)} MB kept in {part.name}; run again to resume" if got else "nothing downloaded"
        log(f"cannot download {spec.filename}: {exc} ({kept})")
        return None
    if not md5_of(part).startswith(spec.md5):
        part.unlink(missing_ok=True)
        log(f"downloaded {spec.filename} does not have md5 {spec.md5}...: deleted. {describe(spec.filename)}")
        return None
    os.replace(part, dest)
    log(f"{dest} downloaded and verified")
    return dest


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def _copy_with_progress(resp, part: Path, have: int, total: int, name: str, log, every_s: float = 3.0) -> None:
    import time

    t0 = last = time.monotonic()
    done = have
    with open(part, "ab" if have else "wb") as out:
        while block := resp.read(1 << 20):
            out.write(block)
            done += len(block)
            now = time.monotonic()
            if now - last >= every_s:
                rate = (done - have) / max(now - t0, 1e-9) / 1e6
                log(f"  {name}: {_mb(done)} / {_mb(total)} MB, {rate:.1f} MB/s")
                last = now
    if total and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")
