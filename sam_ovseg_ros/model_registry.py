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

from sam_ovseg_ros.core import fusion
from sam_ovseg_ros.core.config import NodeConfig
from sam_ovseg_ros.core.weights import OVSEG_FILE, SAM_FILES, WeightsError  # noqa: F401  (WeightsError re-exported)


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
    embeddings: np.ndarray | None = None  # (N, E) unit CLIP crop embeddings per instance (mask_clip mode)


def _take(masks, index):
    """``masks[index]`` for host arrays and device tensors alike (a tensor takes its index on its device)."""
    import torch

    if isinstance(masks, torch.Tensor):
        return masks[torch.as_tensor(index, device=masks.device)]
    return masks[index]


class Models:
    """A segmenter (``segmenter`` parameter: SEGMENTERS) and, unless it gives classes itself, OVSeg."""

    def __init__(self, segmenter, ovseg_predictor) -> None:
        self.segmenter = segmenter  # .segment(image, cfg, class_names) -> generator.Segmentation
        self.ovseg = ovseg_predictor  # None for text-prompted segmenters
        self.embedding_model = ""  # which CLIP made the crop embeddings (a saved map's must match)

    # ------------------------------------------------------------------ per frame
    def segment(self, image: np.ndarray, cfg: NodeConfig, class_names: list[str]):
        with self._oom_guard(cfg.segmenter):
            return self.segmenter.segment(image, cfg, class_names)

    def classify(self, rgb: np.ndarray, masks: np.ndarray, boxes: np.ndarray, order: np.ndarray,
                 class_names: list[str], cfg: NodeConfig, times: dict, runs=None) -> Classification:
        """One class per instance: ``masks[order[i]]`` (with its inclusive box) is instance i + 1.
        ``masks`` is a host array or a device tensor (then OVSeg's label map stays on the device too);
        ``runs``: ``instances.mask_runs`` of them, made once for the instance image and the vote."""
        import torch

        n_vocab = len(class_names)
        labels = embeddings = None
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
                classes, scores = fusion.vote_vocabulary(labels, masks, n_names, n_vocab, boxes, order, runs)
            else:
                picked = _take(masks, order)
                feats = self.ovseg.mask_embeddings(rgb, picked)
                probs = self.ovseg.classify_embeddings(feats, class_names).float().cpu().numpy()
                embeddings = feats.cpu().numpy()
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
        return Classification(classes, scores, uncovered, embeddings)

    @property
    def can_embed(self) -> bool:
        """Whether crops can be embedded for the map's text queries (OVSeg's CLIP is loaded)."""
        return self.ovseg is not None

    def embed(self, rgb: np.ndarray, masks, index: np.ndarray) -> np.ndarray:
        """(len(index), E) unit CLIP embeddings of the masked crops ``masks[index]`` (host or device masks)."""
        picked = _take(masks, index)
        with self._oom_guard("embed"):
            return self.ovseg.mask_embeddings(rgb, picked).cpu().numpy()

    def encode_text(self, text: str) -> np.ndarray:
        """(E,) unit embedding of a free text, by the vocabulary's template ensemble (cached)."""
        import torch

        with torch.inference_mode():
            return self.ovseg.text([text])[0].float().cpu().numpy()

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
        seg = self.segment(img, cfg, class_names)
        if self.ovseg is not None:
            self.classify(img, seg.masks, seg.boxes, np.arange(min(4, len(seg.masks))), class_names, cfg, {})
        return time.perf_counter() - t0


class SamSegmenter:
    """SAM's or SAM 2's automatic masks (our generator, the sam.* settings); classes come from OVSeg."""

    def __init__(self, model_or_prompter, amp_dtype) -> None:
        from sam_ovseg_ros.segmenters.generator import MaskGenerator

        self.generator = MaskGenerator(model_or_prompter, amp_dtype)

    def segment(self, image: np.ndarray, cfg: NodeConfig, class_names: list[str]):
        from sam_ovseg_ros.segmenters.generator import params_for

        return self.generator.generate(image, params_for(cfg.sam, cfg.profile))


class Sam3TextSegmenter:
    """SAM 3: the names are the prompts; every mask comes with its class (see sam3.py)."""

    def __init__(self, segmenter) -> None:
        self.sam3 = segmenter

    def segment(self, rgb: np.ndarray, cfg: NodeConfig, class_names: list[str]):
        from segment_anything.utils.amg import batched_mask_to_box

        from sam_ovseg_ros.segmenters.generator import Segmentation

        thr = cfg.sam3.score_threshold if cfg.sam3.score_threshold >= 0 else (0.262 if cfg.profile == "tiny" else 0.5)
        mthr = cfg.sam3.mask_threshold if cfg.sam3.mask_threshold >= 0 else 0.5
        t: dict = {}
        out = self.sam3.segment(rgb, class_names, thr, mthr, t)
        areas = out.masks.sum(dim=(1, 2))
        keep = areas > 0
        masks = out.masks[keep]
        boxes = batched_mask_to_box(masks).cpu().numpy() if len(masks) else np.zeros((0, 4), np.int64)
        scores = out.scores[keep].cpu().numpy().astype(np.float32)
        return Segmentation(masks.cpu().numpy() if masks.device.type == "cpu" else masks,
                            areas[keep].cpu().numpy(), scores, scores, boxes, t, out.classes[keep].cpu().numpy())



def weight_paths(cfg: NodeConfig) -> tuple[Path, Path]:
    """(SAM checkpoint, OVSeg checkpoint) for the profile; tiny ones are created on first use."""
    folder = cfg.weights_path()
    if cfg.profile == "tiny":
        from sam_ovseg_ros.ovseg import tiny
        from sam_ovseg_ros.segmenters import sam

        return sam.tiny_checkpoint(folder / "tiny"), tiny.tiny_checkpoint(folder / "tiny")
    sam_path = Path(cfg.sam.checkpoint).expanduser() if cfg.sam.checkpoint else folder / SAM_FILES[cfg.sam.model_type]
    ov_path = Path(cfg.ovseg.checkpoint).expanduser() if cfg.ovseg.checkpoint else folder / OVSEG_FILE
    return sam_path, ov_path


def build_sam(cfg: NodeConfig, device: str, amp):
    from sam_ovseg_ros.segmenters import sam

    sam_path, _ = weight_paths(cfg)
    model = sam.load("tiny" if cfg.profile == "tiny" else cfg.sam.model_type, sam_path, device)
    return SamSegmenter(model, amp), sam_path.parent, True


def build_sam2(cfg: NodeConfig, device: str, amp):
    from sam_ovseg_ros.segmenters import sam2

    if cfg.profile == "tiny":
        path, model_type = sam2.tiny_folder(cfg.weights_path() / "tiny"), "tiny"
    else:
        path = Path(cfg.sam2.checkpoint).expanduser() if cfg.sam2.checkpoint else \
            cfg.weights_path() / sam2.FILES[cfg.sam2.model_type]
        model_type = cfg.sam2.model_type
    return SamSegmenter(sam2.load(path, model_type, device), amp), path, True


def build_sam3(cfg: NodeConfig, device: str, amp):
    from sam_ovseg_ros.segmenters import sam3

    if cfg.profile == "tiny":
        folder = sam3.tiny_folder(cfg.weights_path() / "tiny")
    else:
        folder = Path(cfg.sam3.checkpoint).expanduser() if cfg.sam3.checkpoint else cfg.weights_path() / "sam3"
    return Sam3TextSegmenter(sam3.Sam3Segmenter(folder, device, amp)), folder, False


# segmenter parameter value -> builder(cfg, device, amp) -> (segmenter, where it came from, needs OVSeg)
SEGMENTERS = {"sam": build_sam, "sam2": build_sam2, "sam3": build_sam3}


def build_ovseg(cfg: NodeConfig, device: str, amp):
    from sam_ovseg_ros.ovseg import OVSegConfig, build_predictor

    _, ov_path = weight_paths(cfg)
    ov_cfg = OVSegConfig.tiny() if cfg.profile == "tiny" else OVSegConfig.full()
    if not ov_path.is_file():
        from sam_ovseg_ros.core.weights import describe

        raise WeightsError(f"OVSeg checkpoint not found: {ov_path}. {describe(ov_path.name)}")
    if cfg.profile != "tiny":
        from sam_ovseg_ros.core.weights import verify

        verify(ov_path)
    ov_cfg.inference.aggregation = cfg.ovseg.aggregation
    return build_predictor(ov_cfg, ov_path, device=device, amp_dtype=amp)


def build(cfg: NodeConfig, log=print, warmup: bool = True) -> Models:
    """The configured segmenter (and OVSeg when it needs one) on their device, checkpoints verified;
    raises WeightsError naming a bad file."""
    import torch

    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    device = resolve_device(cfg.device, log)
    amp = resolve_precision(cfg.precision, device)
    t0 = time.perf_counter()
    segmenter, source, needs_ovseg = SEGMENTERS[cfg.segmenter](cfg, device, amp)
    predictor = build_ovseg(cfg, device, amp) if needs_ovseg else None
    models = Models(segmenter, predictor)
    if predictor is not None:  # map objects' embeddings are only comparable within one CLIP model
        models.embedding_model = f"{weight_paths(cfg)[1].name} ({cfg.profile} profile)"
    what = {"sam": f"SAM {cfg.sam.model_type} + OVSeg", "sam2": f"SAM 2.1 {cfg.sam2.model_type} + OVSeg",
            "sam3": "SAM 3 (text prompts, no OVSeg)"}[cfg.segmenter]
    log(f"models loaded in {time.perf_counter() - t0:.1f} s on {device} "
        f"({'random-weight tiny models: labels are meaningless' if cfg.profile == 'tiny' else what}) from {source}")
    if warmup:
        log(f"warm-up done in {models.warmup(cfg.classes, cfg):.1f} s")
    return models
