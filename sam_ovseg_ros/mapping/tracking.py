"""Instance tracking: the same physical object keeps one ``track_id`` from frame to frame.

Association, in order, greedy by overlap (best pairs first, each track and instance used once):
1. 2D: mask IoU of this frame's instances with the track images of the last ``max_age`` frames,
   newest first, so a track hidden for a few frames is found again where it was last seen. One
   joint ``bincount`` over (instance, track) pixel pairs gives every intersection of one image.
2. 3D (when the frame has a pose): share of map voxels an unmatched instance has in common with
   an unmatched track's last voxels, ``|A & B| / min(|A|, |B|)``: catches camera motion too large
   for the masks to overlap.
   Frames of another resolution (a camera that changed mode) are left out of the 2D step.
3. Everything else starts a new track. Ids count up and are never reused within a run; a track
   not seen for ``max_age`` frames is forgotten.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class _Track:
    last_frame: int
    voxels: np.ndarray | None  # sorted int64 map-voxel keys of the last view with a pose


def iou_matrix(instances: np.ndarray, n: int, tracks: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """(n, T) IoU of instance ids 1..n with ``track_ids`` as they appear in the track image ``tracks``."""
    lut = np.zeros(int(tracks.max(initial=0)) + 1, np.int64)
    lut[track_ids] = np.arange(1, len(track_ids) + 1)
    t = lut[tracks] if len(lut) else np.zeros_like(tracks, np.int64)
    m = len(track_ids) + 1
    joint = np.bincount(instances.ravel().astype(np.int64) * m + t.ravel(), minlength=(n + 1) * m)
    joint = joint[: (n + 1) * m].reshape(n + 1, m)
    inter = joint[1:, 1:]
    area_i = joint[1:].sum(1)
    area_t = joint[:, 1:].sum(0)
    union = area_i[:, None] + area_t[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def greedy_pairs(score: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs by descending score >= threshold, each row and column at most once."""
    rows, cols = np.nonzero(score >= threshold)
    order = np.argsort(-score[rows, cols], kind="stable")
    used_r, used_c, pairs = set(), set(), []
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


def voxel_overlap(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 or len(b) == 0:
        return 0.0
    return len(np.intersect1d(a, b, assume_unique=True)) / min(len(a), len(b))


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, max_age: int = 10, overlap_3d: float = 0.3) -> None:
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.overlap_3d = overlap_3d
        self.reset()

    def reset(self) -> None:
        """Forget every track (ids keep counting up: a run never reuses one)."""
        self._tracks: dict[int, _Track] = {}
        # (track image, track ids in it) of the last max_age frames, newest last
        self._history: deque[tuple[np.ndarray, list[int]]] = deque(maxlen=max(self.max_age, 1))
        self._frame = 0
        self._next = getattr(self, "_next", 1)

    def live(self):
        """Ids of the tracks that can still be matched (a view of the table, no copy)."""
        return self._tracks.keys()

    def update(self, instances: np.ndarray, n: int, voxels: list[np.ndarray] | None = None) -> np.ndarray:
        """(n,) uint32 track id of instance ids 1..n; ``voxels[i]`` are instance i+1's sorted map-voxel keys."""
        self._frame += 1
        ids = np.zeros(n, np.uint32)
        free_inst = set(range(n))
        taken: set[int] = set()
        for img, present in reversed(self._history):  # newest first
            if not free_inst:
                break
            if img.shape != instances.shape:
                continue  # a frame of another resolution (the camera changed mode): masks do not compare
            cand = np.array([t for t in present if t not in taken and t in self._tracks], np.int64)
            if len(cand) == 0:
                continue
            iou = iou_matrix(instances, n, img, cand)
            rows = np.array(sorted(free_inst), np.int64)
            for r, c in greedy_pairs(iou[rows], self.iou_threshold):
                ids[rows[r]] = cand[c]
                taken.add(int(cand[c]))
                free_inst.discard(int(rows[r]))
        if voxels is not None and free_inst:
            open_tracks = [t for t, tr in self._tracks.items() if t not in taken and tr.voxels is not None]
            rows = sorted(free_inst)
            if open_tracks:
                score = np.array([[voxel_overlap(voxels[r], self._tracks[t].voxels) for t in open_tracks]
                                  for r in rows])
                for r, c in greedy_pairs(score, self.overlap_3d):
                    ids[rows[r]] = open_tracks[c]
                    taken.add(open_tracks[c])
                    free_inst.discard(rows[r])
        for r in sorted(free_inst):
            ids[r] = self._next
            self._next += 1
        for i, t in enumerate(ids.tolist()):
            old = self._tracks.get(t)
            vox = voxels[i] if voxels is not None else (old.voxels if old else None)
            self._tracks[t] = _Track(self._frame, vox)
        self._tracks = {t: tr for t, tr in self._tracks.items() if self._frame - tr.last_frame < self.max_age}
        lut = np.zeros(n + 1, np.uint32)
        lut[1:] = ids
        visible = np.bincount(instances.ravel(), minlength=n + 1)[1:] > 0
        self._history.append((lut[instances], ids[visible].tolist()))
        return ids
