"""What each map object looks like to CLIP, and text queries over the objects (ROS-free).

An object's embedding accumulates its views: each view adds its crop's L2-normalised mask-prompted
CLIP embedding (OVSeg's image tower, the masked crop of the instance) weighted by the share of the
image the instance covers there; the object's embedding is that sum, normalised. Why weighted by
area: a large, close view shows the object whole and sharp, a sliver at the image border or behind an
occluder gives a crop CLIP reads poorly; a plain mean would let many such slivers outvote a few good
views. Why the area as a share of the image: a camera mode change does not change the weights. Why a
sum: merging two objects adds their sums, exactly and in any order, and no view is ever stored.

Rows live in arrays with spare capacity (ids, sums, their norms, views); a query is one matrix-vector
product over all rows and a partial sort, so 10 000 objects answer in a few milliseconds.
"""
from __future__ import annotations

import numpy as np


class EmbeddingTable:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.dim = 0
        self._n = 0
        self._ids = np.zeros(0, np.int64)
        self._sums = np.zeros((0, 0), np.float32)  # per row: sum over views of weight * unit embedding
        self._norms = np.zeros(0, np.float32)
        self._views = np.zeros(0, np.int64)
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return self._n

    ids = property(lambda self: self._ids[: self._n])
    sums = property(lambda self: self._sums[: self._n])
    views = property(lambda self: self._views[: self._n])

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._ids, self._sums, self._norms, self._views))

    def _rows(self, ids: list[int]) -> np.ndarray:
        """Rows of ``ids``, new rows (zero) for ids not in the table."""
        new = [i for i in dict.fromkeys(ids) if i not in self._row]
        if new:
            need = self._n + len(new)
            if need > len(self._ids):
                cap = max(need, 2 * len(self._ids), 256)
                for name in ("_ids", "_sums", "_norms", "_views"):
                    old = getattr(self, name)
                    grown = np.zeros((cap, *old.shape[1:]), old.dtype)
                    grown[: self._n] = old[: self._n]
                    setattr(self, name, grown)
            for i in new:
                self._row[i] = self._n
                self._ids[self._n] = i
                self._sums[self._n] = 0
                self._norms[self._n] = 0
                self._views[self._n] = 0
                self._n += 1
        return np.array([self._row[i] for i in ids], np.int64)

    def add(self, ids, embeddings: np.ndarray, weights: np.ndarray) -> None:
        """Views: ``embeddings[j]`` (unit, (k, E)) of object ``ids[j]`` seen over ``weights[j]`` of the image."""
        embeddings = np.asarray(embeddings, np.float32)
        if len(embeddings) == 0:
            return
        if self.dim and embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings of {embeddings.shape[1]} dimensions, the table holds {self.dim}")
        if not self.dim:
            self.dim = embeddings.shape[1]
            self._sums = np.zeros((len(self._ids), self.dim), np.float32)
        rows = self._rows([int(i) for i in ids])
        np.add.at(self._sums, rows, embeddings * np.asarray(weights, np.float32)[:, None])
        np.add.at(self._views, rows, 1)
        touched = np.unique(rows)
        self._norms[touched] = np.linalg.norm(self._sums[touched], axis=1)

    def merge(self, src: int, dst: int) -> None:
        """Object ``src`` joined ``dst``: one row with both sums."""
        if src not in self._row:
            return
        if dst not in self._row:
            r = self._row.pop(src)
            self._row[dst] = r
            self._ids[r] = dst
            return
        s, d = self._row[src], self._row[dst]
        self._sums[d] += self._sums[s]
        self._views[d] += self._views[s]
        self._norms[d] = np.linalg.norm(self._sums[d])
        self._drop(np.array([s]))

    def keep(self, alive) -> None:
        """Only the rows of objects in ``alive`` stay (the others were evicted)."""
        gone = [r for i, r in self._row.items() if i not in alive]
        if gone:
            self._drop(np.array(gone, np.int64))

    def _drop(self, rows: np.ndarray) -> None:
        keep = np.ones(self._n, bool)
        keep[rows] = False
        n = int(keep.sum())
        for name in ("_ids", "_sums", "_norms", "_views"):
            a = getattr(self, name)
            a[:n] = a[: self._n][keep]
        self._n = n
        self._row = {int(i): r for r, i in enumerate(self._ids[:n].tolist())}

    def embedding(self, oid: int) -> np.ndarray | None:
        """The object's unit embedding (None when no view of it was embedded)."""
        r = self._row.get(oid)
        return None if r is None else self._sums[r] / self._norms[r]

    def views_of(self, ids) -> np.ndarray:
        """Embedded views of each object (0 for objects without an embedding)."""
        return np.array([self._views[self._row[i]] if i in self._row else 0 for i in ids], np.int64)

    def scores(self, text: np.ndarray) -> np.ndarray:
        """Cosine similarity of every row with a unit text embedding (E,)."""
        n = self._n
        if n == 0 or self.dim != len(text):
            return np.zeros(n, np.float32)
        return (self._sums[:n] @ np.asarray(text, np.float32)) / np.maximum(self._norms[:n], 1e-12)

    def query(self, text: np.ndarray, top_k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the ``top_k`` best rows, best first (ties: lower id first); ``allowed``: a
        container of the ids that may be answered (e.g. those on ``~/map/objects``), None for all."""
        s = self.scores(text)
        ids = self.ids
        if allowed is not None and len(s):
            ok = np.fromiter((i in allowed for i in ids.tolist()), bool, len(ids))
            s, ids = s[ok], ids[ok]
        k = min(top_k, len(s))
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if k < len(s):  # the k best, and every row tied with the k-th (the lower ids among them win)
            cand = np.flatnonzero(s >= s[np.argpartition(-s, k - 1)[k - 1]])
        else:
            cand = np.arange(len(s))
        cand = cand[np.lexsort((ids[cand], -s[cand]))][:k]
        return ids[cand].copy(), s[cand].astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        return {"embed_ids": self.ids.copy(), "embed_sums": self.sums.copy(), "embed_views": self.views.copy()}

    def load(self, ids: np.ndarray, sums: np.ndarray, views: np.ndarray) -> None:
        self.clear()
        if len(ids):
            self.dim = sums.shape[1]
            self._sums = np.zeros((0, self.dim), np.float32)
            rows = self._rows([int(i) for i in ids])
            self._sums[rows] = sums
            self._views[rows] = views
            self._norms[rows] = np.linalg.norm(sums, axis=1)
