"""Model construction for the pipeline (filled in by the SAM and OVSeg stages)."""
from __future__ import annotations


from .weights import WeightsError  # noqa: F401  (re-exported for the node)


class FrameFailure(RuntimeError):
    """A model failed on one frame (e.g. CUDA out of memory); the frame is skipped."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def build(cfg, log=print):
    return None
