"""Plain data passed between the node and the ROS-free pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam_ovseg_ros.core.cloud import Intrinsics


class InputError(ValueError):
    """A frame that cannot be processed; ``kind`` groups messages for throttled logging."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Frame:
    """One synchronized RGB-D frame, decoded.

    ``depth`` is raw (uint16 in ``depth.scale`` units, 0 invalid; or float32 metres). When
    ``depth_k`` is set the depth comes from another camera and is registered to the color
    camera with ``depth_to_color`` (rotation 3x3, translation 3) first.
    """

    color: np.ndarray  # H x W x 3 uint8 RGB
    depth: np.ndarray
    k: Intrinsics  # of the color image
    stamp_ns: int = 0
    depth_k: Intrinsics | None = None
    depth_to_color: tuple[np.ndarray, np.ndarray] | None = None
    pose: np.ndarray | None = None  # 4x4 map <- colour camera at stamp_ns (None: no transform, no map update)


@dataclass
class Segment:
    id: int  # 1..N in this frame's instance image
    area: int
    bbox: tuple[int, int, int, int]  # x, y, width, height (tight)
    score: float  # SAM predicted IoU
    class_id: int = 0  # 0 unlabelled, k + 1 = class k
    class_name: str = ""
    class_score: float = 0.0
    centroid: tuple[float, float, float] = (float("nan"),) * 3
    valid_points: int = 0
    track_id: int = 0  # stable across frames (0: not tracked)

    @property
    def key(self) -> int:
        """What colours and markers follow: the track when there is one, else the frame's id."""
        return self.track_id or self.id


@dataclass
class FrameResult:
    depth_colormap: np.ndarray  # H x W x 3 uint8
    instances: np.ndarray  # H x W uint16
    semantic: np.ndarray  # H x W uint16
    overlay: np.ndarray | None  # H x W x 3 uint8; None when nobody subscribes
    points: np.ndarray | None  # POINT_DTYPE, (H, W) or (1, N); None when off or nobody subscribes
    segments: list[Segment]
    class_names: list[str]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    points_dense: bool = False  # points holds valid points only (cloud.organized: false)
