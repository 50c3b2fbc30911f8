"""Fusion: one class per SAM mask, and the semantic image (ROS-free, vectorised).

``vote`` is the seed's rule (seed_pipeline.md §4.1): a mask takes the most frequent OVSeg label
over all of its pixels (also those a smaller mask covers), ties to the lower class index.
Classes here are 0-based vocabulary indices; -1 means no class (no labelled pixel in the mask,
or OVSeg's extra "others" name). The semantic image uses class + 1, and 0 for unlabelled.
"""
from __future__ import annotations

import numpy as np


def vote(labels: np.ndarray, masks: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(M,) majority class of each (M, H, W) mask over ``labels`` (H, W; -1 = no label), and its share.

    Pixels are grouped by label once (a stable sort), then each mask's counts per label are
    segment sums over that order: O(M * H * W) bytes touched, no per-pixel Python.
    """
    m = masks.shape[0]
    if m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_labels = flat[order]
    valid_from = np.searchsorted(sorted_labels, 0)  # skip -1 (unlabelled) pixels
    order, sorted_labels = order[valid_from:], sorted_labels[valid_from:]
    counts = np.zeros((m, num_classes), np.int64)
    if len(order):
        present, starts = np.unique(sorted_labels, return_index=True)
        gathered = masks.reshape(m, -1)[:, order]
        counts[:, present] = np.add.reduceat(gathered, starts, axis=1, dtype=np.int64)
    total = counts.sum(axis=1)
    classes = np.where(total > 0, counts.argmax(axis=1), -1)  # argmax: first maximum = lowest index
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, counts.max(axis=1) / np.maximum(total, 1), 0.0)
    return classes, share.astype(np.float32)


def semantic_image(instances: np.ndarray, classes: np.ndarray, uncovered: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint16: class + 1 of each pixel's instance; pixels of no instance take ``uncovered``
    (labels, -1 = none) + 1 when given (``keep_ovseg``), else 0."""
    lut = np.zeros(len(classes) + 1, np.uint16)
    lut[1:] = np.asarray(classes, dtype=np.int64) + 1  # -1 -> 0
    sem = lut[instances]
    if uncovered is not None:
        free = instances == 0
        sem[free] = (uncovered[free] + 1).astype(np.uint16)
    return sem


def drop_extra_classes(classes: np.ndarray, num_vocab: int) -> np.ndarray:
    """Indices beyond the user's vocabulary (OVSeg's appended "others") become -1."""
    return np.where(classes >= num_vocab, -1, classes)
