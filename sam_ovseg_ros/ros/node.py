"""``sam_ovseg_node``: inputs -> pipeline worker -> outputs, with the semantic map beside them.

The node only composes its parts: parameters (params.py), inputs and their pairing (inputs.py),
the ROS-free frame pipeline on a worker thread (core/frame_pipeline.py), the per-frame outputs and
their publisher thread (outputs.py), the map topics and services (map_io.py) and diagnostics.
Frame inference never runs in an executor callback, nor does a map query's text encoding (map_io.py
answers it on a thread of its own); the executor is single-threaded, as rclpy's multi-threaded one
slows the worker (service_thread.py). Bad input is logged once per kind and period and skipped; the
node keeps running.
"""
# ruff: noqa: E402
from __future__ import annotations

from sam_ovseg_ros.ros.memory import limit_arenas

# First of all, while this is the only thread: torch and the middleware start threads as they are imported,
# and glibc fixes its arena limit when a second thread first allocates (ros/memory.py)
limit_arenas()

import sys
import threading
import time
import traceback

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from sam_ovseg_ros import model_registry
from sam_ovseg_ros.core import depth, kernels
from sam_ovseg_ros.core.config import ConfigError, NodeConfig
from sam_ovseg_ros.core.frame_pipeline import Pipeline
from sam_ovseg_ros.core.frame_types import InputError
from sam_ovseg_ros.mapping.mapper import Mapper
from sam_ovseg_ros.ros import messages
from sam_ovseg_ros.ros.diagnostics import Diagnostics, NodeStats, Problems
from sam_ovseg_ros.ros.inputs import FrameInputs
from sam_ovseg_ros.ros.map_io import MapInterface
from sam_ovseg_ros.ros.memory import trim_heap
from sam_ovseg_ros.ros.outputs import FrameOutputs
from sam_ovseg_ros.ros.params import NodeParameters

TRIM_PERIOD_S = 2.0


class SamOvsegNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sam_ovseg", **kwargs)
        self.stats = NodeStats()
        self.problems = Problems(self.get_logger(), self.stats)
        self.params = NodeParameters(self, on_change=self._on_config_change)
        cfg = self.params.config()
        log = self.get_logger()
        log.info(f"profile={cfg.profile} device={cfg.device} sam.input={cfg.sam.input} fusion.mode={cfg.fusion.mode} "
                 f"qos.reliability={cfg.qos.reliability} sync.slop={cfg.sync.slop}s, {len(cfg.classes)} classes")
        if kernels.available:
            log.info(f"compiled frame kernels: {kernels.where}")
        else:  # same results, a few ms more per frame
            log.warning(f"compiled frame kernels {kernels.where}: instances, vote, segments and cloud run on the "
                        "slower NumPy paths")
        self.models = model_registry.build(cfg, log=log.info)
        tc, mc = cfg.tracking, cfg.map
        self.mapper = Mapper(mc.voxel_size, mc.max_voxels, tc.iou_threshold, tc.max_age, tc.overlap_3d,
                             mc.min_object_voxels, mc.pixel_stride)
        self.pipeline = Pipeline(self.models, self.mapper, alloc=messages.message_array)
        depth.colormap_lut(cfg.depth.colormap)  # matplotlib's import and the LUT, before the first frame

        self._running = True
        self.inputs = FrameInputs(self, cfg, self.stats, self.problems, on_time_reset=self._on_time_reset,
                                  running=lambda: self._running)
        self.outputs = FrameOutputs(self, cfg, self.stats, self.problems)
        self.map = MapInterface(self, self.mapper, cfg, self.stats, self.problems, *self._query_encoder(cfg)) \
            if mc.enabled else None
        self.diagnostics = Diagnostics(self, self.stats, self.inputs, cfg.diagnostics.period)
        self.create_timer(TRIM_PERIOD_S, trim_heap)  # memory freed by frames goes back to the system
        self._worker = threading.Thread(target=self._work, name="sam_ovseg_worker", daemon=True)
        self._worker.start()
        log.info("ready: waiting for color/image, depth/image and color/camera_info")

    def _query_encoder(self, cfg: NodeConfig):
        """(text -> unit embedding or None, why not, the CLIP's name) for ~/map/query and the map's file."""
        if self.models is None or not self.models.can_embed:
            return None, (f"segmenter '{cfg.segmenter}' loads no CLIP model (it labels masks itself), so map "
                          "objects have no embeddings: text queries need segmenter sam or sam2 (with OVSeg)"), ""
        return self.models.encode_text, "", self.models.embedding_model

    def config(self) -> NodeConfig:
        return self.params.config()

    def _on_config_change(self, old: NodeConfig, new: NodeConfig) -> None:
        if new.classes != old.classes:
            self.get_logger().info(f"vocabulary changed: {len(new.classes)} classes; applies from the next frame")
            self.outputs.publish_vocabulary(new.classes)
        if new.sync.slop != old.sync.slop:
            self.inputs.sync.slop_ns = int(round(new.sync.slop * 1e9))

    def _on_time_reset(self, from_ns: int, to_ns: int) -> None:
        self.get_logger().warning(f"input stamps jumped back from {from_ns / 1e9:.3f} s to {to_ns / 1e9:.3f} s "
                                  "(bag loop or clock reset): sync and track buffers reset, processing continues")
        self.stats.count("time_resets")
        self.mapper.reset_time()  # TF links reset themselves when their own stamps jump back

    def _work(self) -> None:
        """The worker thread: the newest pair -> frame -> pipeline -> the publisher thread."""
        while self._running:
            job = self.inputs.jobs.get(timeout=0.2)
            if job is None:
                continue
            cfg = self.config()
            t0 = time.perf_counter()
            try:
                frame = self.inputs.frame(job, cfg)
                decode_s = time.perf_counter() - t0
                if self.map is not None:
                    self.map.pose(frame, job.color.header.frame_id, cfg)
                result = self.pipeline.process(frame, cfg, self.outputs.wanted())
            except (InputError, model_registry.FrameFailure) as exc:  # FrameFailure: e.g. CUDA out of memory
                self.problems.skip_frame(exc.kind, str(exc))
                continue
            except Exception as exc:  # keep the node alive; the trace goes to the log once per period
                if self.problems.throttle.ok("internal"):
                    self.get_logger().error(f"frame failed: {exc}\n{traceback.format_exc()}")
                self.stats.bad_input("internal")
                continue
            result.timings = {"decode": decode_s, **result.timings}
            self.stats.count("processed")
            self.outputs.put(job.color.header, job.stamp_ns, result, cfg)

    def shutdown(self) -> None:
        self._running = False
        self.inputs.jobs.close()
        self._worker.join(timeout=10)
        self.outputs.stop()
        if self.map is not None:
            self.map.shutdown()


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = SamOvsegNode()
    except (ConfigError, model_registry.WeightsError) as exc:
        rclpy.logging.get_logger("sam_ovseg").fatal(str(exc))
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
