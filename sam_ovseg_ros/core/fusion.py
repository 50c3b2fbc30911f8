"""Fusion: one class per SAM mask, and the semantic image (ROS-free, vectorised).

``vote`` is SegmentAnyRGBD's rule (open_vocab_seg/utils/predictor.py): a mask takes the most frequent OVSeg label
over all of its pixels (also those a smaller mask covers), ties to the lower class index.
Classes here are 0-based vocabulary indices; -1 means no class (no labelled pixel in the mask,
or OVSeg's extra "others" name). The semantic image uses class + 1, and 0 for unlabelled.
"""
from __future__ import annotations

import numpy as np
import torch

from sam_ovseg_ros.core import kernels
from sam_ovseg_ros.core.instances import histogram, lookup, mask_runs, windows


def vote(labels, masks, num_classes: int, boxes: np.ndarray | None = None,
         index: np.ndarray | None = None, runs: "kernels.MaskRuns | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """Majority class of each mask over ``labels`` (H, W; -1 = no label), and its share.

    ``masks`` (M, H, W) bool; ``index`` picks and orders the masks to vote for (default: all), without
    copying them. Host masks (numpy): with ``boxes`` (x0, y0, x1, y1 inclusive) every count runs inside
    the mask's box only, so work is the sum of box areas. Device masks (a tensor, e.g. on the GPU):
    the counts are one product of the mask stack with the one-hot label map, made where the masks are;
    only the (M, K) count table comes back. Host masks with boxes count in the compiled kernel where
    it is built, from ``runs`` (``instances.mask_runs`` of the same masks, made once per frame) or
    runs made here: a run of mask pixels adds whole runs of one label. Else NumPy/OpenCV passes.
    """
    index = np.arange(masks.shape[0]) if index is None else np.asarray(index)
    runs = runs if runs is not None else mask_runs(masks, boxes)
    if runs is not None:
        counts = kernels.vote_counts(labels, runs, num_classes, index)
    elif isinstance(masks, torch.Tensor):
        counts = _counts_on_device(labels, masks, num_classes, boxes, index)
    else:
        counts = _counts_on_host(labels, masks, num_classes, boxes, index)
    total = counts.sum(axis=1)
    classes = np.where(total > 0, counts.argmax(axis=1), -1)  # argmax: first maximum = lowest index
    share = np.where(total > 0, counts.max(axis=1, initial=0) / np.maximum(total, 1), 0.0)
    return classes, share.astype(np.float32)


PHASES = 4  # interleaved sub-histograms, see _counts_on_host


def _counts_on_host(labels, masks: np.ndarray, num_classes: int, boxes: np.ndarray | None,
                    index: np.ndarray) -> np.ndarray:
    """(len(index), K) label counts per mask, one OpenCV histogram per mask box.

    Key = ((label + 1) + K1 x (column mod 4)) x mask. A histogram over long runs of one value is bound
    by incrementing the same counter back to back (3x slower on real label maps than on noise); the
    four column phases put neighbouring pixels of one label into different bins, summed afterwards.
    Pixels outside the mask all count in bin 0 (unlabelled), dropped.
    """
    k1 = num_classes + 1  # column 0: unlabelled (-1) and pixels outside the mask
    bins = k1 * PHASES
    if bins > 65536:
        raise ValueError(f"{num_classes} classes: the vote counts at most {65536 // PHASES - 1}")
    dtype = np.uint8 if bins <= 256 else np.uint16
    labels = np.asarray(labels)
    if labels.size and not -1 <= labels.min() <= labels.max() < num_classes:  # would count in a wrong bin
        raise ValueError(f"labels span {labels.min()}..{labels.max()}, outside -1..{num_classes - 1}")
    phase = ((np.arange(labels.shape[1]) % PHASES) * k1).astype(dtype)
    keyed = (labels + 1).astype(dtype) + phase[None, :]  # (label + 1) + k1 x phase, once per frame
    ones = masks.view(np.uint8)
    buf = np.empty(keyed.size, dtype)
    counts = np.empty((len(index), bins), np.float32)
    for row, (j, (ys, xs)) in enumerate(zip(index, windows(boxes, index))):
        crop = keyed[ys, xs]
        key = buf[: crop.size].reshape(crop.shape)
        np.multiply(crop, ones[j, ys, xs], out=key)  # outside the mask: 0, the unlabelled bin of phase 0
        counts[row] = histogram(key, bins)
    return counts.astype(np.int64).reshape(len(index), PHASES, k1).sum(1)[:, 1:]


def _counts_on_device(labels, masks: torch.Tensor, num_classes: int, boxes, index: np.ndarray) -> np.ndarray:
    """(len(index), K) label counts per mask: masks (M, P) @ one-hot labels (P, K) with exact integer
    sums (0/1 products accumulated in fp32: exact up to 2^24 pixels). Boxes are not needed."""
    dev = masks.device
    lab = torch.as_tensor(labels, device=dev).flatten().long()
    onehot = torch.zeros((lab.shape[0], num_classes + 1), dtype=torch.float32, device=dev)
    onehot[torch.arange(lab.shape[0], device=dev), lab + 1] = 1.0  # column 0: unlabelled
    sel = masks[torch.as_tensor(index, device=dev)].flatten(1).to(torch.float32)
    return torch.round(sel @ onehot).long()[:, 1:].cpu().numpy()


def vote_vocabulary(labels: np.ndarray, masks: np.ndarray, num_labels: int, num_vocab: int,
                    boxes: np.ndarray | None = None, index: np.ndarray | None = None,
                    runs: "kernels.MaskRuns | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`vote` over every name OVSeg scored, then names beyond the vocabulary become -1.

    With a one-name vocabulary OVSeg appends "others" (``num_labels = num_vocab + 1``), as the
    original does: a mask whose pixels are mostly "others" must lose the vote and stay unlabelled,
    so "others" pixels are counted, not dropped before voting.
    """
    classes, share = vote(labels, masks, num_labels, boxes, index, runs)
    extra = classes >= num_vocab
    return np.where(extra, -1, classes), np.where(extra, 0.0, share).astype(np.float32)


def semantic_image(instances: np.ndarray, classes: np.ndarray, uncovered: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint16: class + 1 of each pixel's instance; pixels of no instance take ``uncovered``
    (labels, -1 = none) + 1 when given (``keep_ovseg``), else 0."""
    lut = np.zeros(65536, np.uint16)
    lut[1:len(classes) + 1] = np.asarray(classes, dtype=np.int64) + 1  # -1 -> 0
    sem = lookup(np.ascontiguousarray(instances, np.uint16), lut)
    if uncovered is not None:
        free = instances == 0
        sem[free] = (uncovered[free] + 1).astype(np.uint16)
    return sem


def drop_extra_classes(classes: np.ndarray, num_vocab: int) -> np.ndarray:
    """Indices beyond the user's vocabulary (OVSeg's appended "others") become -1."""
    return np.where(classes >= num_vocab, -1, classes)
