"""The node's configuration: one typed tree, mirrored 1:1 by ROS parameters.

Every leaf of :class:`NodeConfig` is a ROS parameter whose name is its dotted path
(``sam.input``, ``depth.colormap``...). The node declares them from this tree, so the
names, defaults and types live only here. ``validate`` rejects values the pipeline cannot
run with; the node calls it on start-up and on every run-time parameter change.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

# The 20 ScanNet names the seed's UI uses for ScanNet frames (seed_pipeline.md §6).
DEFAULT_CLASSES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "other furniture",
]


def default_weights_dir() -> Path:
    """``$SAM_OVSEG_WEIGHTS`` or ``~/.cache/sam_ovseg_ros`` (CONTRACT.md)."""
    env = os.environ.get("SAM_OVSEG_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sam_ovseg_ros"


@dataclass
class SamConfig:
    input: str = "depth"  # depth: SAM sees ~/depth_colormap (the seed's idea); rgb: the color image
    model_type: str = "vit_h"
    checkpoint: str = ""  # "" = <weights_dir>/<official file name of model_type>
    preset: str = "fast"  # seed | fast (see sam.py PRESETS); the knobs below override when set
    points_per_side: int = 0  # 0 = from preset
    points_per_batch: int = 0
    pred_iou_thresh: float = -1.0  # < 0 = from preset (tiny profile: its own thresholds)
    stability_score_thresh: float = -1.0
    box_nms_thresh: float = -1.0
    min_mask_region_area: int = -1


@dataclass
class OvsegConfig:
    checkpoint: str = ""  # "" = <weights_dir>/ovseg_swinbase_vitL14_ft_mpt.pth
    aggregation: str = "seed"  # seed: soft sum over valid queries | ovseg_demo: one region per class
    mask_threshold: float = -1.0  # < 0 = the aggregation's own (seed 0.1, ovseg_demo 0.35)
    ensemble_weight: float = 0.0  # 0 = CLIP only, as the demo config
    clip_batch: int = 32  # masked crops per CLIP forward


@dataclass
class FusionConfig:
    mode: str = "vote"  # vote: majority OVSeg label per SAM mask | mask_clip: CLIP on each SAM mask
    uncovered: str = "unlabelled"  # pixels under no SAM mask: unlabelled | keep_ovseg


@dataclass
class DepthConfig:
    colormap: str = "inferno"
    normalization: str = "seed"  # seed: per-frame inverse-depth min-max | fixed: min_m..max_m
    min_m: float = 0.3  # fixed normalization range
    max_m: float = 5.0
    scale: float = 0.001  # metres per unit of 16UC1/mono16 depth (REP 118: mm)


@dataclass
class SyncConfig:
    slop: float = 0.02  # s; 0 = exact stamps
    queue_size: int = 10  # per-input buffers


@dataclass
class QosConfig:
    reliability: str = "reliable"  # reliable | best_effort (inputs and image/cloud outputs)
    depth: int = 5


@dataclass
class CloudConfig:
    enabled: bool = True
    organized: bool = True  # H x W with NaN for invalid depth; false: only valid points, height 1


@dataclass
class RegistrationConfig:
    mode: str = "auto"  # auto: register depth to color when depth/camera_info differs | on | off
    depth_to_color: list[float] = field(default_factory=list)  # [tx ty tz qx qy qz qw] or []


@dataclass
class MarkersConfig:
    lifetime: float = 1.0  # s; stale labels vanish in RViz
    text_size: float = 0.08  # m


@dataclass
class DiagnosticsConfig:
    period: float = 5.0  # s between status logs and /diagnostics messages; 0 = off


@dataclass
class DebugConfig:
    delay_s: float = 0.0  # test-only: sleep this long per frame to emulate a slow GPU


@dataclass
class NodeConfig:
    profile: str = "default"  # default: real checkpoints | tiny: random-weight tiny models (tests)
    device: str = "auto"  # cuda | cpu | auto (cuda when available, else cpu with a warning)
    precision: str = "auto"  # auto (bf16 on cuda, fp32 on cpu) | fp32 | bf16 | fp16
    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    vocabulary_file: str = ""  # a file with one name per line, or a bundled list name
    weights_dir: str = ""  # "" = $SAM_OVSEG_WEIGHTS or ~/.cache/sam_ovseg_ros
    torch_threads: int = 0  # 0 = leave torch's default
    max_image_pixels: int = 4096 * 4096  # larger images are refused, not allocated
    sam: SamConfig = field(default_factory=SamConfig)
    ovseg: OvsegConfig = field(default_factory=OvsegConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    qos: QosConfig = field(default_factory=QosConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    markers: MarkersConfig = field(default_factory=MarkersConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    def weights_path(self) -> Path:
        return Path(self.weights_dir).expanduser() if self.weights_dir else default_weights_dir()


CHOICES: dict[str, tuple[str, ...]] = {
    "profile": ("default", "tiny"),
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "sam.input": ("depth", "rgb"),
    "sam.model_type": ("vit_h", "vit_l", "vit_b"),
    "sam.preset": ("seed", "fast"),
    "ovseg.aggregation": ("seed", "ovseg_demo"),
    "fusion.mode": ("vote", "mask_clip"),
    "fusion.uncovered": ("unlabelled", "keep_ovseg"),
    "depth.normalization": ("seed", "fixed"),
    "qos.reliability": ("reliable", "best_effort"),
    "registration.mode": ("auto", "on", "off"),
}

# Parameters that only take effect at start-up (models, subscriptions); the rest apply on the next frame.
STARTUP_ONLY = (
    "profile", "device", "precision", "weights_dir", "torch_threads", "sam.model_type",
    "sam.checkpoint", "ovseg.checkpoint", "qos.reliability", "qos.depth", "sync.queue_size",
)


class ConfigError(ValueError):
    """A parameter value the node cannot run with."""


def iter_leaves(cfg: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) for every leaf of a config tree, in declaration order."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from iter_leaves(value, name + ".")
        else:
            yield name, value


def get_leaf(cfg: NodeConfig, name: str) -> Any:
    obj: Any = cfg
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def set_leaf(cfg: NodeConfig, name: str, value: Any) -> None:
    """Set one dotted leaf, coerced to the default's type (ROS gives ints for float params etc.)."""
    *path, last = name.split(".")
    obj: Any = cfg
    for part in path:
        obj = getattr(obj, part)
    if not hasattr(obj, last) or dataclasses.is_dataclass(getattr(obj, last)):
        raise ConfigError(f"unknown parameter '{name}'")
    current = getattr(obj, last)
    setattr(obj, last, _coerce(name, current, value))


def _coerce(name: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be a bool, got {value!r}")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(current, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return list(value)
    raise ConfigError(f"{name}: unsupported type {type(current).__name__}")


def validate_classes(names: list[str]) -> list[str]:
    """Names stripped; rejects an empty list, empty names and duplicates (ids must be unambiguous)."""
    cleaned = [str(n).strip() for n in names]
    if not cleaned:
        raise ConfigError("classes must not be empty")
    empty = [i for i, n in enumerate(cleaned) if not n]
    if empty:
        raise ConfigError(f"classes has empty names at positions {empty}")
    seen: set[str] = set()
    dups = sorted({n for n in cleaned if n in seen or seen.add(n)})
    if dups:
        raise ConfigError(f"classes has duplicate names: {dups}")
    if len(cleaned) > 65534:
        raise ConfigError("classes: at most 65534 names fit a 16-bit label image")
    return cleaned


def validate(cfg: NodeConfig) -> None:
    """Raise ConfigError naming the first bad value."""
    for name, choices in CHOICES.items():
        value = get_leaf(cfg, name)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    cfg.classes = validate_classes(cfg.classes)
    if cfg.sync.slop < 0:
        raise ConfigError("sync.slop must be >= 0")
    if cfg.sync.queue_size < 1 or cfg.qos.depth < 1:
        raise ConfigError("sync.queue_size and qos.depth must be >= 1")
    if cfg.depth.scale <= 0:
        raise ConfigError("depth.scale must be > 0")
    if not 0 < cfg.depth.min_m < cfg.depth.max_m:
        raise ConfigError("depth.min_m/max_m must satisfy 0 < min_m < max_m")
    if cfg.max_image_pixels < 1:
        raise ConfigError("max_image_pixels must be >= 1")
    if not 0.0 <= cfg.ovseg.ensemble_weight <= 1.0:
        raise ConfigError("ovseg.ensemble_weight must be in [0, 1]")
    if cfg.ovseg.mask_threshold >= 1.0:
        raise ConfigError("ovseg.mask_threshold must be < 1 (negative = the aggregation's default)")
    if cfg.ovseg.clip_batch < 1:
        raise ConfigError("ovseg.clip_batch must be >= 1")
    if len(cfg.registration.depth_to_color) not in (0, 7):
        raise ConfigError("registration.depth_to_color must be [] or [tx ty tz qx qy qz qw]")
    if cfg.debug.delay_s < 0 or cfg.markers.lifetime < 0 or cfg.diagnostics.period < 0:
        raise ConfigError("debug.delay_s, markers.lifetime and diagnostics.period must be >= 0")
    _check_colormap(cfg.depth.colormap)


def _check_colormap(name: str) -> None:
    import matplotlib

    if name not in matplotlib.colormaps:
        raise ConfigError(f"depth.colormap '{name}' is not a matplotlib colormap")
