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

# The 20 ScanNet names SegmentAnyRGBD's UI uses for ScanNet frames (its ui.py, Scannet tab).
DEFAULT_CLASSES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "other furniture",
]


def default_weights_dir() -> Path:
    """``$SAM_OVSEG_WEIGHTS`` or ``~/.cache/sam_ovseg_ros``."""
    env = os.environ.get("SAM_OVSEG_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sam_ovseg_ros"


@dataclass
class SamConfig:
    input: str = "depth"  # depth: SAM sees ~/depth_colormap (SegmentAnyRGBD's idea); rgb: the color image
    model_type: str = "vit_h"
    checkpoint: str = ""  # "" = <weights_dir>/<official file name of model_type>
    preset: str = "fast"  # original | fast (see sam.py PRESETS); the knobs below override when set
    points_per_side: int = 0  # 0 = the preset's
    points_per_batch: int = 0  # 0 = the preset's
    pred_iou_thresh: float = -1.0  # negative = the preset's; 0 switches the filter off
    stability_score_thresh: float = -1.0  # negative = the preset's; 0 switches the filter off
    box_nms_thresh: float = -1.0  # negative = the preset's
    min_mask_region_area: int = -1  # negative = the preset's; 0 switches the clean-up off


@dataclass
class Sam2Config:
    model_type: str = "hiera_small"  # SAM 2.1 image encoder: hiera_tiny | hiera_small | hiera_base_plus | hiera_large
    checkpoint: str = ""  # released .pt file or a Hugging Face folder; "" = <weights_dir>/sam2.1_<model_type>.pt


@dataclass
class Sam3Config:
    checkpoint: str = ""  # folder in the Hugging Face layout; "" = <weights_dir>/sam3
    score_threshold: float = -1.0  # negative = the profile's (0.5; tiny: 0.262)
    mask_threshold: float = -1.0  # negative = 0.5


@dataclass
class OvsegConfig:
    checkpoint: str = ""  # "" = <weights_dir>/ovseg_swinbase_vitL14_ft_mpt.pth
    aggregation: str = "original"  # original: soft sum over valid queries | ovseg_demo: one region per class
    mask_threshold: float = -1.0  # < 0 = the aggregation's own (original 0.1, ovseg_demo 0.35)
    ensemble_weight: float = 0.0  # 0 = CLIP only, as the demo config
    clip_batch: int = 32  # masked crops per CLIP forward


@dataclass
class FusionConfig:
    mode: str = "vote"  # vote: majority OVSeg label per SAM mask | mask_clip: CLIP on each SAM mask
    uncovered: str = "unlabelled"  # pixels under no SAM mask: unlabelled | keep_ovseg


@dataclass
class DepthConfig:
    colormap: str = "inferno"
    normalization: str = "original"  # original: per-frame inverse-depth min-max | fixed: min_m..max_m
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
    decimation: int = 1  # every n-th row and column (n = 2: a quarter of the points and bytes)


@dataclass
class RegistrationConfig:
    mode: str = "auto"  # auto: register depth to color when depth/camera_info differs | on | off
    depth_to_color: list[float] = field(default_factory=list)  # [tx ty tz qx qy qz qw] or []


@dataclass
class MarkersConfig:
    lifetime: float = 1.0  # s; stale labels vanish in RViz
    text_size: float = 0.08  # m


@dataclass
class TrackingConfig:
    iou_threshold: float = 0.3  # mask IoU that keeps a track from one frame to the next
    max_age: int = 15  # frames a track may stay unseen (occlusion) before it is forgotten
    overlap_3d: float = 0.3  # share of map voxels that re-associates an instance when masks do not overlap


@dataclass
class MapConfig:
    enabled: bool = True
    frame: str = "map"  # fixed frame; the colour frame's pose comes from /tf at the image stamp
    voxel_size: float = 0.05  # m
    max_voxels: int = 2_000_000  # the oldest (then farthest) voxels go beyond this
    publish_period: float = 1.0  # s between ~/map/points, ~/map/objects, ~/map/markers
    save_dir: str = "~/.ros/sam_ovseg_map"  # start-up only: the map's file (map_state.npz) and ~/map/save's export
    autosave_period: float = 30.0  # s between saves of the map (and one at a clean stop); 0 = off
    load_on_start: bool = True  # load map_state.npz from save_dir at start-up
    tf_timeout: float = 0.1  # s to wait for the frame's transform before skipping the map for it
    min_object_voxels: int = 5  # smaller objects are not reported
    pixel_stride: int = 2  # integrate every n-th row and column (2: samples <= 1.5 cm apart up to 4.5 m)
    # vote mode: CLIP embeddings of at most this many instance crops per frame, for ~/map/query (those whose
    # objects have the fewest embedded views first); mask_clip mode embeds every crop anyway; 0 = no embeddings
    embed_per_frame: int = 16


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
    vocabulary_file: str = ""  # start-up only: a file with one name per line, or a bundled list name
    vocabulary_list: str = ""  # a bundled list; may change at run time (files may not)
    weights_dir: str = ""  # "" = $SAM_OVSEG_WEIGHTS or ~/.cache/sam_ovseg_ros
    torch_threads: int = 0  # 0 = leave torch's default
    max_image_pixels: int = 4096 * 4096  # larger images are refused, not allocated
    transport: str = "raw"  # raw: sensor_msgs/Image | compressed: image_transport's compressed + compressedDepth
    segmenter: str = "sam"  # sam: SAM + OVSeg (the original) | sam2: SAM 2.1 + OVSeg | sam3: SAM 3 text prompts
    sam: SamConfig = field(default_factory=SamConfig)
    sam2: Sam2Config = field(default_factory=Sam2Config)
    sam3: Sam3Config = field(default_factory=Sam3Config)
    ovseg: OvsegConfig = field(default_factory=OvsegConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    qos: QosConfig = field(default_factory=QosConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    markers: MarkersConfig = field(default_factory=MarkersConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    map: MapConfig = field(default_factory=MapConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    def weights_path(self) -> Path:
        return Path(self.weights_dir).expanduser() if self.weights_dir else default_weights_dir()


CHOICES: dict[str, tuple[str, ...]] = {
    "profile": ("default", "tiny"),
    "transport": ("raw", "compressed"),
    "segmenter": ("sam", "sam2", "sam3"),
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "sam.input": ("depth", "rgb"),
    "sam.model_type": ("vit_h", "vit_l", "vit_b"),
    "sam2.model_type": ("hiera_tiny", "hiera_small", "hiera_base_plus", "hiera_large"),
    "sam.preset": ("original", "fast"),
    "ovseg.aggregation": ("original", "ovseg_demo"),
    "fusion.mode": ("vote", "mask_clip"),
    "fusion.uncovered": ("unlabelled", "keep_ovseg"),
    "depth.normalization": ("original", "fixed"),
    "qos.reliability": ("reliable", "best_effort"),
    "registration.mode": ("auto", "on", "off"),
    "vocabulary_list": ("", "ade20k_150", "coco_stuff_171", "scannet_200"),
}

# Parameters that name files or folders: the operator's choice at start-up, never anyone's on the ROS graph.
FILE_PARAMS = ("vocabulary_file", "weights_dir", "sam.checkpoint", "sam2.checkpoint", "sam3.checkpoint",
               "ovseg.checkpoint", "map.save_dir")
# Parameters that only take effect at start-up (models, subscriptions, files); the rest apply on the next frame.
STARTUP_ONLY = (
    "profile", "device", "precision", "torch_threads", "transport", "segmenter", "sam.model_type", "sam2.model_type",
    "qos.reliability", "qos.depth", "sync.queue_size",
    "map.enabled", "map.frame", "map.voxel_size", "map.max_voxels", "map.publish_period", "map.pixel_stride",
    "tracking.max_age", "map.autosave_period", "map.load_on_start", *FILE_PARAMS,
)


# What each parameter means, with unit and range; the node puts these in its ParameterDescriptors
# (``ros2 param describe``), CHOICES and STARTUP_ONLY are appended there. Knob rule for sam.*:
# a value set here overrides the preset; 0 for a count, or a negative value, takes the preset's.
DESCRIPTIONS: dict[str, str] = {
    "profile": "default: the real SAM and OVSeg checkpoints; tiny: seeded random-weight tiny models "
               "(tests, CI; labels are meaningless)",
    "device": "where the models run: auto (cuda when torch sees one, else cpu with a warning) | cpu | cuda",
    "precision": "model arithmetic: auto (bf16 on cuda, fp32 on cpu) | fp32 | bf16 | fp16",
    "classes": "the vocabulary: class names in id order (semantic value k+1 = classes[k]); changes apply "
               "from the next frame; replaced by the file's names when vocabulary_file is set",
    "vocabulary_file": "a file with one class name per line, or a bundled list (ade20k_150, coco_stuff_171, "
                       "scannet_200); '' = use classes. Names: letters, digits, spaces and , - ' . / ( ) & only, at "
                       "most 100 characters, at most 4096 names",
    "vocabulary_list": "a bundled vocabulary (ade20k_150, coco_stuff_171, scannet_200) that replaces classes; may "
                       "change at run time; '' = use classes (or vocabulary_file)",
    "weights_dir": "folder of the checkpoints; '' = $SAM_OVSEG_WEIGHTS or ~/.cache/sam_ovseg_ros",
    "torch_threads": "CPU threads for torch; 0 = torch's default",
    "max_image_pixels": "larger images (width x height, pixels) are refused instead of allocated; >= 1",
    "transport": "input images: raw (sensor_msgs/Image on color/image, depth/image) | compressed "
                 "(sensor_msgs/CompressedImage on color/image/compressed as jpeg/png and "
                 "depth/image/compressedDepth as image_transport's compressedDepth png)",
    "segmenter": "instances and classes: sam (SAM's automatic masks labelled by OVSeg, the original method) | "
                 "sam2 (SAM 2.1's automatic masks with the same sam.* grid and filters, labelled by OVSeg) | sam3 "
                 "(SAM 3: every vocabulary name is a text prompt and each instance comes with its class; "
                 "OVSeg is not loaded)",
    "sam2.model_type": "SAM 2.1 image encoder: hiera_tiny | hiera_small | hiera_base_plus | hiera_large",
    "sam2.checkpoint": "SAM 2.1 checkpoint: the released .pt file of sam2.model_type, or a folder in the Hugging "
                       "Face layout (config.json, model.safetensors); '' = <weights_dir>/sam2.1_<sam2.model_type>.pt",
    "sam3.checkpoint": "SAM 3 folder in the Hugging Face layout (config.json, model.safetensors, processor and "
                       "tokenizer files); '' = <weights_dir>/sam3",
    "sam3.score_threshold": "keep SAM 3 instances whose score (class x presence probability) exceeds this, in "
                            "[0, 1); negative = the profile's (0.5; tiny: 0.262)",
    "sam3.mask_threshold": "SAM 3 mask probability above which a pixel is in the instance, in [0, 1); "
                           "negative = 0.5",
    "sam.input": "what SAM segments: depth (the colour-rendered depth, ~/depth_colormap; SegmentAnyRGBD) | rgb",
    "sam.model_type": "SAM image encoder: vit_h (the original's) | vit_l | vit_b",
    "sam.checkpoint": "SAM checkpoint file; '' = <weights_dir>/<official file name of sam.model_type>",
    "sam.preset": "generator settings: original (SegmentAnyRGBD: 64x64 points, pred IoU 0.5, stability 0.8, "
                  "min region 100 px) | fast (32x32 points, batches of 256, same filters)",
    "sam.points_per_side": "point grid per side (prompts = n^2); 0 = the preset's",
    "sam.points_per_batch": "prompts per mask-decoder batch; 0 = the preset's",
    "sam.pred_iou_thresh": "keep masks whose predicted IoU exceeds this, in [0, 1]; 0 switches the filter "
                           "off; negative = the preset's",
    "sam.stability_score_thresh": "keep masks whose stability score exceeds this, in [0, 1]; 0 switches the "
                                  "filter off; negative = the preset's",
    "sam.box_nms_thresh": "box IoU above which the lower-scored mask is suppressed, in [0, 1]; 0 keeps only "
                          "masks with disjoint boxes; negative = the preset's",
    "sam.min_mask_region_area": "holes and islands smaller than this (pixels) are removed; 0 switches it off; "
                                "negative = the preset's",
    "ovseg.checkpoint": "OVSeg checkpoint file; '' = <weights_dir>/ovseg_swinbase_vitL14_ft_mpt.pth",
    "ovseg.aggregation": "per-pixel class scores: original (SegmentAnyRGBD: soft sum over all regions) | "
                         "ovseg_demo (OVSeg's demo: the best region per class, binary masks)",
    "ovseg.mask_threshold": "mask probability above which a region is cropped for CLIP, in [0, 1); negative = "
                            "the aggregation's (original 0.1, ovseg_demo 0.35)",
    "ovseg.ensemble_weight": "weight of CLIP against the mask-classifier probabilities, in [0, 1]; 0 = CLIP "
                             "only (the released demo config)",
    "ovseg.clip_batch": "masked crops per CLIP forward (OVSeg regions and fusion.mode mask_clip); >= 1",
    "fusion.mode": "class of each SAM mask: vote (majority OVSeg label over the mask; SegmentAnyRGBD) | "
                   "mask_clip (OVSeg's mask-adapted CLIP classifies each SAM mask; no OVSeg label map)",
    "fusion.uncovered": "pixels under no SAM mask: unlabelled (0) | keep_ovseg (OVSeg's own label)",
    "depth.colormap": "matplotlib colormap of ~/depth_colormap (inferno is the original's)",
    "depth.normalization": "original (per-frame min-max of inverse depth, SegmentAnyRGBD) | fixed (inverse "
                           "depth over depth.min_m..depth.max_m, colours stable across frames)",
    "depth.min_m": "near end of the fixed normalization, metres; 0 < min_m < max_m",
    "depth.max_m": "far end of the fixed normalization, metres",
    "depth.scale": "metres per unit of 16UC1/mono16 depth (REP 118: 0.001, millimetres); > 0",
    "sync.slop": "largest stamp difference of a colour/depth pair, seconds; 0 = exact stamps",
    "sync.queue_size": "messages buffered per input while pairing; >= 1",
    "qos.reliability": "inputs and image/cloud outputs: reliable | best_effort (match the camera driver)",
    "qos.depth": "QoS history depth of inputs and outputs; >= 1",
    "cloud.enabled": "publish ~/points (the semantic PointCloud2); false saves its build and transfer",
    "cloud.organized": "true: H x W with NaN for invalid depth; false: only valid points, height 1",
    "cloud.decimation": "publish every n-th row and column of ~/points (organized ceil(H/n) x ceil(W/n)); 1 = all; "
                        "2 sends a quarter of the bytes; >= 1",
    "registration.mode": "register depth into the colour camera: auto (when depth/camera_info is given) | "
                         "on | off",
    "registration.depth_to_color": "depth->colour extrinsic [tx ty tz qx qy qz qw] (metres, unit quaternion), "
                                   "p_color = R p_depth + t; [] = from the depth_to_color topic or identity",
    "markers.lifetime": "seconds before a class label marker vanishes in RViz; >= 0",
    "markers.text_size": "height of the class label text, metres",
    "tracking.iou_threshold": "mask IoU, in (0, 1], above which an instance keeps the track it overlaps",
    "tracking.max_age": "frames a track may stay unseen (occlusion) before it is forgotten; >= 1",
    "tracking.overlap_3d": "share of map voxels, in (0, 1], that re-associates an instance with a track when a "
                           "pose is known and the masks do not overlap",
    "map.enabled": "integrate posed frames into the semantic voxel map and publish ~/map/*",
    "map.frame": "fixed frame of the map; the colour frame's pose is looked up in /tf at the image stamp",
    "map.voxel_size": "edge of a map voxel, metres; > 0",
    "map.max_voxels": "map size bound: the voxels seen longest ago, then the farthest, are dropped; >= 1",
    "map.publish_period": "seconds between ~/map/points, ~/map/objects and ~/map/markers; > 0",
    "map.save_dir": "folder of the map's own file (map_state.npz: autosaves, loaded at start-up) and of what "
                    "~/map/save writes (map.ply, objects.json); nothing is written elsewhere",
    "map.autosave_period": "seconds between saves of the map to map.save_dir/map_state.npz (also one at a clean "
                           "stop); 0 = off; >= 0",
    "map.load_on_start": "load map.save_dir/map_state.npz at start-up when present (a map of another map.frame, "
                         "voxel size or format, or a damaged file, is set aside, not mixed in)",
    "map.embed_per_frame": "vote mode: CLIP embeddings of at most this many instance crops per frame (the objects "
                           "with the fewest embedded views first), for ~/map/query; mask_clip mode embeds every "
                           "crop anyway; 0 = none; 0..256",
    "map.tf_timeout": "seconds to wait for a frame's transform before the map skips that frame; >= 0",
    "map.min_object_voxels": "objects with fewer voxels are not reported; >= 1",
    "map.pixel_stride": "integrate every n-th row and column of the frame; 1 = every pixel. At 2 the samples "
                        "stay far denser than 5 cm voxels (<= 1.5 cm apart up to 4.5 m at f = 600 px) at a "
                        "quarter of the cost; >= 1",
    "diagnostics.period": "seconds between status logs and /diagnostics messages; 0 = off",
    "debug.delay_s": "test only: sleep this long per frame (seconds) to emulate a slow GPU; >= 0",
}


def describe(name: str) -> str:
    """The ROS parameter description of a leaf: meaning, unit/range, choices, when it applies."""
    text = DESCRIPTIONS[name]
    if name in CHOICES:
        text += f". Choices: {', '.join(CHOICES[name])}"
    if name in STARTUP_ONLY:
        text += ". Read-only: set at start-up (launch argument or parameter file), restart to change"
    return text


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


MAX_CLASSES = 4096  # names in a vocabulary (the semantic image holds 65534; text encoding is the cost)
MAX_NAME_CHARS = 100  # characters in a class name (CLIP reads 77 tokens)
MAX_STRING_CHARS = 4096  # any other string parameter (paths, frame names, colormaps)
NAME_PUNCTUATION = " ,-'./()&"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class name (without repeating it), or None."""
    if len(name) > MAX_NAME_CHARS:
        return f"longer than {MAX_NAME_CHARS} characters"
    if not all(c.isalnum() or c in NAME_PUNCTUATION for c in name):
        return "a character other than letters, digits, spaces and , - ' . / ( ) &"
    return None


def validate_classes(names: list[str]) -> list[str]:
    """Names stripped; rejects an empty or over-long list, empty, over-long or non-name strings, and duplicates
    (ids must be unambiguous). Messages give positions, never the names' text."""
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"classes: {len(names)} names, at most {MAX_CLASSES}")
    cleaned = [str(n).strip() for n in names]
    if not cleaned:
        raise ConfigError("classes must not be empty")
    empty = [i for i, n in enumerate(cleaned) if not n]
    if empty:
        raise ConfigError(f"classes has empty names at positions {empty[:10]}")
    for i, n in enumerate(cleaned):
        why = name_problem(n)
        if why:
            raise ConfigError(f"classes: the name at position {i} has {why}" if why.startswith("a ")
                              else f"classes: the name at position {i} is {why}")
    first: dict[str, int] = {}
    dups = [i for i, n in enumerate(cleaned) if first.setdefault(n, i) != i]
    if dups:
        raise ConfigError(f"classes has duplicate names at positions {dups[:10]} (the same name came earlier)")
    return cleaned


def validate(cfg: NodeConfig) -> None:
    """Raise ConfigError naming the first bad value."""
    for name, choices in CHOICES.items():
        value = get_leaf(cfg, name)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    cfg.classes = validate_classes(cfg.classes)
    for name, value in iter_leaves(cfg):
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise ConfigError(f"{name}: longer than {MAX_STRING_CHARS} characters")
    if cfg.vocabulary_file and cfg.vocabulary_list:
        raise ConfigError("set vocabulary_file or vocabulary_list, not both")
    if cfg.map.autosave_period < 0:
        raise ConfigError("map.autosave_period must be >= 0 (0 = off)")
    if not 0 <= cfg.map.embed_per_frame <= 256:
        raise ConfigError("map.embed_per_frame must be in 0..256 (crops embedded per frame; 0 = none)")
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
    if not (0 < cfg.tracking.iou_threshold <= 1 and 0 < cfg.tracking.overlap_3d <= 1) or cfg.tracking.max_age < 1:
        raise ConfigError("tracking.iou_threshold and overlap_3d must be in (0, 1], tracking.max_age >= 1")
    if cfg.map.voxel_size <= 0 or cfg.map.max_voxels < 1 or cfg.map.publish_period <= 0:
        raise ConfigError("map.voxel_size and map.publish_period must be > 0, map.max_voxels >= 1")
    if cfg.map.tf_timeout < 0 or cfg.map.min_object_voxels < 1 or not cfg.map.frame.strip("/"):
        raise ConfigError("map.tf_timeout must be >= 0, map.min_object_voxels >= 1, map.frame not empty")
    if cfg.sam3.score_threshold >= 1 or cfg.sam3.mask_threshold >= 1:
        raise ConfigError("sam3.score_threshold and sam3.mask_threshold must be < 1 (negative = default)")
    if cfg.cloud.decimation < 1:
        raise ConfigError("cloud.decimation must be >= 1")
    if cfg.map.pixel_stride < 1:
        raise ConfigError("map.pixel_stride must be >= 1")
    if cfg.debug.delay_s < 0 or cfg.markers.lifetime < 0 or cfg.diagnostics.period < 0:
        raise ConfigError("debug.delay_s, markers.lifetime and diagnostics.period must be >= 0")
    _check_colormap(cfg.depth.colormap)


def _check_colormap(name: str) -> None:
    import matplotlib

    if name not in matplotlib.colormaps:
        raise ConfigError(f"depth.colormap '{name}' is not a matplotlib colormap")
