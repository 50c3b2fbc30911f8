"""One frame through every stage: depth -> colormap -> SAM -> OVSeg -> fusion -> cloud -> overlay.

ROS-free: numpy in, :class:`FrameResult` out, with the time of every stage. Models are built
once by :func:`models.build` and handed in; the pipeline itself holds only caches (rays).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from sam_ovseg_ros.core import cloud, fusion, registration
from sam_ovseg_ros.core import depth as depth_mod
from sam_ovseg_ros.core import overlay as overlay_mod
from sam_ovseg_ros.core.cloud import Intrinsics
from sam_ovseg_ros.core.config import NodeConfig
from sam_ovseg_ros.core.frame_types import Frame, FrameResult, InputError, Segment
from sam_ovseg_ros.core.instances import mask_runs, masks_to_instances, measure, segments_from_instances


class StageTimer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t0


class Scratch:
    """``alloc`` for intermediate arrays: one reused buffer per (shape, dtype), so a large array built
    every frame touches no fresh pages (a first touch costs a page fault per 4 KB)."""

    def __init__(self) -> None:
        self._bufs: dict = {}

    def __call__(self, shape: tuple, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype))
        if key not in self._bufs:
            if len(self._bufs) >= 8:  # a new camera size (or decimation): start over
                self._bufs.clear()
            self._bufs[key] = np.empty(shape, dtype)
        return self._bufs[key]


@dataclass(frozen=True)
class Outputs:
    """Which costly outputs to build (the node asks its publishers whether anyone subscribes)."""

    points: bool = True
    overlay: bool = True


class Pipeline:
    """Runs frames with the models it was given (``models`` may be None: depth and cloud only)."""

    def __init__(self, models=None, mapper=None, alloc=np.empty) -> None:
        self.models = models
        self.mapper = mapper  # mapping.Mapper: track ids, and the voxel map of posed frames
        self.alloc = alloc  # (shape, dtype) -> array for the cloud (the node's: memory a message owns as is)
        self._bp = cloud.Backprojector()
        self._bp_decimated = cloud.Backprojector()  # its own ray cache: the full-size one serves centroids
        self._scratch = Scratch()

    def check(self, frame: Frame, cfg: NodeConfig) -> None:
        """Raise InputError for a frame no stage can use."""
        h, w = frame.color.shape[:2]
        problem = frame.k.problem()
        if problem:
            raise InputError("camera_info", problem)
        if (frame.k.width, frame.k.height) != (w, h):
            raise InputError("camera_info", f"camera_info is {frame.k.width}x{frame.k.height} "
                                            f"but the color image is {w}x{h}")
        dh, dw = frame.depth.shape
        if frame.depth_k is None and (dh, dw) != (h, w):
            raise InputError("size_mismatch", f"depth {dw}x{dh} and color {w}x{h} differ and depth is not "
                                              "registered: enable align_depth on the camera, or publish "
                                              "depth/camera_info (and the depth->color extrinsic) to register it")
        if frame.depth_k is not None:
            problem = frame.depth_k.problem()
            if problem:
                raise InputError("camera_info", "depth/" + problem)
            if (frame.depth_k.width, frame.depth_k.height) != (dw, dh):
                raise InputError("camera_info", f"depth/camera_info is {frame.depth_k.width}x{frame.depth_k.height} "
                                                f"but the depth image is {dw}x{dh}")

    def depth_metres(self, frame: Frame, cfg: NodeConfig) -> tuple[np.ndarray, np.ndarray]:
        """(raw depth at the color size, float32 metres with NaN) after registration if needed."""
        depth_m = depth_mod.to_metres(frame.depth, cfg.depth.scale)
        if frame.depth_k is None:
            return frame.depth, depth_m
        rot, trans = frame.depth_to_color if frame.depth_to_color is not None else (np.eye(3), np.zeros(3))
        reg = registration.register(depth_m, frame.depth_k, frame.k, rot, trans)
        return reg, reg

    def process(self, frame: Frame, cfg: NodeConfig, want: "Outputs | None" = None) -> FrameResult:
        """All stages of one frame; ``want`` skips building outputs nobody listens to (lazy)."""
        want = want or Outputs()
        timer = StageTimer()
        self.check(frame, cfg)
        with timer("depth"):
            raw, depth_m = self.depth_metres(frame, cfg)
            if not np.isfinite(depth_m).any():
                raise InputError("depth_invalid", "depth has no valid pixel (all 0/NaN/inf/negative)")
            dc = cfg.depth
            colormap = depth_mod.render(raw, depth_m, dc.normalization, dc.colormap, dc.scale, dc.min_m, dc.max_m)

        h, w = frame.color.shape[:2]
        class_names = list(cfg.classes)
        instances = np.zeros((h, w), np.uint16)
        semantic = np.zeros((h, w), np.uint16)
        scores = classes = class_scores = np.zeros(0)
        windows = masks = order = embeddings = None
        if self.models is not None:
            rgb_input = cfg.segmenter == "sam3" or cfg.sam.input == "rgb"  # SAM 3's prompts are about colour images
            sam_image = np.ascontiguousarray(frame.color) if rgb_input else colormap
            masks = self.models.segment(sam_image, cfg, class_names)  # times itself: encoder/decoder/postprocess
            timer.times.update(masks.timings)
            text_prompted = masks.classes is not None
            with timer("instances"):
                # overlaps: the smallest mask on top (SegmentAnyRGBD); text-prompted: the best-scored on top
                key = -masks.scores if text_prompted else masks.areas
                runs = mask_runs(masks.masks, masks.boxes)  # the mask stack read once for paint and vote
                instances, order = masks_to_instances(masks.masks, key, masks.boxes, runs)
                scores, windows = masks.scores[order], masks.boxes[order]  # each id lies inside its mask's box
            if text_prompted:
                classes, class_scores, uncovered = masks.classes[order], scores, None
            else:
                cls = self.models.classify(frame.color, masks.masks, masks.boxes, order, class_names, cfg,
                                           timer.times, runs)
                classes, class_scores, uncovered = cls.classes, cls.scores, cls.uncovered
                embeddings = cls.embeddings
            with timer("fusion"):
                semantic = fusion.semantic_image(instances, classes, uncovered)

        with timer("segments"):
            measures = measure(instances, len(scores), windows, depth_m, self._bp.rays(frame.k))
            segments = segments_from_instances(measures, scores, classes, class_scores, class_names)
        if self.mapper is not None:
            with timer("track_map"):
                tracks = self.mapper.step(instances, semantic, frame.color, depth_m, self._bp.rays(frame.k),
                                          np.asarray(classes, np.int64), class_names, frame.pose, frame.stamp_ns)
            for seg, t in zip(segments, tracks.tolist()):
                seg.track_id = t
            if (frame.pose is not None and masks is not None and masks.classes is None and self.models.can_embed
                    and cfg.map.embed_per_frame > 0 and len(tracks)):
                with timer("embed"):
                    self._embed_objects(frame, masks.masks, order, tracks, measures.areas, embeddings, cfg)
        points = overlay = None
        if cfg.cloud.enabled and want.points:
            with timer("cloud"):
                # a dense cloud selects from an organized one built in reused memory, into memory from alloc
                alloc = self.alloc if cfg.cloud.organized else self._scratch
                n = cfg.cloud.decimation
                if n > 1:  # rows and columns 0, n, 2n...: a pinhole camera with fx/n, cx/n of the same rays
                    k = frame.k
                    kd = Intrinsics(k.fx / n, k.fy / n, k.cx / n, k.cy / n, -(-k.width // n), -(-k.height // n))
                    points = cloud.build_points(self._bp_decimated, depth_m[::n, ::n], frame.color[::n, ::n], kd,
                                                semantic[::n, ::n], instances[::n, ::n], alloc)
                else:
                    points = cloud.build_points(self._bp, depth_m, frame.color, frame.k, semantic, instances, alloc)
                if not cfg.cloud.organized:
                    points = cloud.dense_points(points, self.alloc)
        if want.overlay:
            with timer("overlay"):
                overlay = overlay_mod.draw(frame.color, instances, segments)
        if cfg.debug.delay_s > 0:
            with timer("debug_delay"):
                time.sleep(cfg.debug.delay_s)
        return FrameResult(colormap, instances, semantic, overlay, points, segments, class_names, timer.times,
                           points_dense=points is not None and not cfg.cloud.organized)

    def _embed_objects(self, frame: Frame, masks, order: np.ndarray, tracks: np.ndarray, areas: np.ndarray,
                       embeddings: np.ndarray | None, cfg: NodeConfig) -> None:
        """Map objects' CLIP embeddings (mapping/embeddings.py): mask_clip mode hands over every instance's crop
        embedding; vote mode embeds at most ``map.embed_per_frame`` crops, the least-seen objects first."""
        h, w = frame.color.shape[:2]
        if embeddings is not None:
            rows = self.mapper.embed_rows(tracks, areas, None)
            vecs = embeddings[rows]
        else:
            rows = self.mapper.embed_rows(tracks, areas, cfg.map.embed_per_frame)
            vecs = self.models.embed(frame.color, masks, order[rows])
        self.mapper.add_embeddings(tracks[rows], vecs, areas[rows] / float(h * w))


__all__ = ["Outputs", "Pipeline", "StageTimer", "Segment"]
