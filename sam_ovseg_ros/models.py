"""The two models behind the pipeline, built once: SAM (instances) and OVSeg (classes).

``build`` resolves device and precision, checks and loads the checkpoints (``profile: tiny``
creates seeded tiny ones and loads them through the same loaders), and warms both models up.
Per frame, ``segment`` gives SAM masks and ``classify`` one class per mask, by SegmentAnyRGBD's vote
over OVSeg's label map or by OVSeg's mask-adapted CLIP on each mask directly. A CUDA
out-of-memory on one frame becomes ``FrameFailure`` (the frame is skipped, caches emptied).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import fusion
from .config import NodeConfig
from .weights import OVSEG_FILE, SAM_FILES, WeightsError  # noqa: F401  (WeightsError re-exported)


class FrameFailure(RuntimeError):
    """A model failed on one frame (e.g. CUDA out of memory); the frame is skipped."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def resolve_device(requested: str, log=print) -> str:
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise WeightsError("device 'cuda' requested but torch sees no CUDA device (use device:=auto or cpu)")
    log("WARNING: device 'auto': no CUDA device found, running on the CPU (expect seconds per frame "
        "with real models)")
    return "cpu"


def resolve_precision(precision: str, device: str):
    import torch

    if precision == "auto":
        precision = "bf16" if device == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass
class Classification:
    classes: np.ndarray  # (N,) vocabulary index per instance, -1 = none
    scores: np.ndarray  # (N,) vote share or CLIP probability
    uncovered: np.ndarray | None  # OVSeg labels (H, W) for keep_ovseg, else None


class Models:
    def __init__(self, sam_model, ovseg_predictor, amp_dtype) -> None:
        from .sam import MaskGenerator

        self.generator = MaskGenerator(sam_model, amp_dtype)
        self.ovseg = ovseg_predictor

    # ------------------------------------------------------------------ per frame
    def segment(self, image: np.ndarray, cfg: NodeConfig):
        from .sam import params_for

        with self._oom_guard("sam"):
            return self.generator.generate(image, params_for(cfg.sam, cfg.profile))

    def classify(self, rgb: np.ndarray, masks: np.ndarray, boxes: np.ndarray, order: np.ndarray,
                 class_names: list[str], cfg: NodeConfig, times: dict) -> Classification:
        """One class per instance: ``masks[order[i]]`` (with its inclusive box) is instance i + 1.
        ``masks`` is a host array or a device tensor (then OVSeg's label map stays on the device too)."""
        import torch

        n_vocab = len(class_names)
        labels = None
        need_map = cfg.fusion.mode == "vote" or cfg.fusion.uncovered == "keep_ovseg"
        self.ovseg.cfg.inference.ensemble_weight = cfg.ovseg.ensemble_weight
        self.ovseg.cfg.inference.clip_batch = cfg.ovseg.clip_batch  # both the map and mask_clip batch crops
        with self._oom_guard("ovseg"):
            if need_map:
                t0 = time.perf_counter()
                agg = cfg.ovseg.aggregation
                thr = cfg.ovseg.mask_threshold if cfg.ovseg.mask_threshold >= 0 else None
                out = self.ovseg.infer(rgb, class_names, aggregation=agg, mask_threshold=thr)
                lab = out.labels
                lab = lab.masked_fill(out.blank, -1)  # ovseg_demo: pixels no region covers carry no label
                # may hold OVSeg's appended "others": it votes like any class; stays on the device
                # when the masks are there too
                labels = lab if isinstance(masks, torch.Tensor) else lab.cpu().numpy()
                n_names = len(out.class_names)
                times["ovseg"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            if cfg.fusion.mode == "vote":
                classes, scores = fusion.vote_vocabulary(labels, masks, n_names, n_vocab, boxes, order)
            else:
                picked = masks[torch.as_tensor(order, device=masks.device)] if isinstance(masks, torch.Tensor) \
                    else masks[order]
                probs = self.ovseg.classify_masks(rgb, picked, class_names).float().cpu().numpy()
                classes = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
                scores = probs.max(axis=1) if len(probs) else np.zeros(0, np.float32)
                scores = np.where(classes >= n_vocab, 0.0, scores).astype(np.float32)  # "others" wins: no class
                classes = fusion.drop_extra_classes(classes, n_vocab)
            times["fusion" if cfg.fusion.mode == "vote" else "mask_clip"] = time.perf_counter() - t0
        if cfg.fusion.uncovered == "keep_ovseg":
            host = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else labels
            uncovered = fusion.drop_extra_classes(host, n_vocab)
        else:
            uncovered = None
        return Classification(classes, scores, uncovered)

    @contextmanager
    def _oom_guard(self, stage: str):
        import torch

        try:
            yield
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise FrameFailure("cuda_oom", f"CUDA out of memory in {stage}; frame skipped ({exc})") from None

    def warmup(self, class_names: list[str], cfg: NodeConfig) -> float:
        """One synthetic frame through both models: kernels, caches and the text embeddings."""
        t0 = time.perf_counter()
        yy, xx = np.mgrid[0:480, 0:640]
        img = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        sam = self.segment(img, cfg)
        self.classify(img, sam.masks, sam.boxes, np.arange(min(4, len(sam.masks))), class_names, cfg, {})
        return time.perf_counter() - t0


def weight_paths(cfg: NodeConfig) -> tuple[Path, Path]:
    """(SAM checkpoint, OVSeg checkpoint) for the profile; tiny ones are created on first use."""
    folder = cfg.weights_path()
    if cfg.profile == "tiny":
        from . import sam
        from .ovseg import tiny

        return sam.tiny_checkpoint(folder / "tiny"), tiny.tiny_checkpoint(folder / "tiny")
    sam_path = Path(cfg.sam.checkpoint).expanduser() if cfg.sam.checkpoint else folder / SAM_FILES[cfg.sam.model_type]
    ov_path = Path(cfg.ovseg.checkpoint).expanduser() if cfg.ovseg.checkpoint else folder / OVSEG_FILE
    return sam_path, ov_path


def build(cfg: NodeConfig, log=print, warmup: bool = True) -> Models:
    """Both models on their device, checkpoints verified; raises WeightsError naming a bad file."""
    import torch

    from . import sam
    from .ovseg import OVSegConfig, build_predictor

    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    device = resolve_device(cfg.device, log)
    amp = resolve_precision(cfg.precision, device)
    sam_path, ov_path = weight_paths(cfg)
    t0 = time.perf_counter()
    sam_model = sam.load("tiny" if cfg.profile == "tiny" else cfg.sam.model_type, sam_path, device)
    ov_cfg = OVSegConfig.tiny() if cfg.profile == "tiny" else OVSegConfig.full()
    if not ov_path.is_file():
        from .weights import describe

        raise WeightsError(f"OVSeg checkpoint not found: {ov_path}. {describe(ov_path.name)}")
    if cfg.profile != "tiny":
        from .weights import verify

        verify(ov_path)
    ov_cfg.inference.aggregation = cfg.ovseg.aggregation
    predictor = build_predictor(ov_cfg, ov_path, device=device, amp_dtype=amp)
    models = Models(sam_model, predictor, amp)
    log(f"models loaded in {time.perf_counter() - t0:.1f} s on {device} "
        f"({'random-weight tiny models: labels are meaningless' if cfg.profile == 'tiny' else 'SAM ' + cfg.sam.model_type + ' + OVSeg'})"
        f" from {sam_path.parent}")
    if warmup:
        log(f"warm-up done in {models.warmup(cfg.classes, cfg):.1f} s")
    return models
