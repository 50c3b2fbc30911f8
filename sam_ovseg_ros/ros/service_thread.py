"""A service answered on a thread of its own, so a slow answer never holds up the node's executor.

rclpy's MultiThreadedExecutor would give the same concurrency, but its Python wait loop competes with the
frame worker for the GIL and the cores: on two cores it made frames 3x slower and lost 40% of 30 Hz
input pairs (test_overload, measured against this class). So the node spins one SingleThreadedExecutor
and a slow service (a map query encoding a new text) gets a small helper node with an executor and a
thread of its own, idle until a request comes. Its service keeps the name the node would have given it,
remappings included; the helper shows up in ``ros2 node list`` as ``<node>_<suffix>``.
"""
from __future__ import annotations

import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


class ServiceThread:
    def __init__(self, node, srv_type, name: str, callback, suffix: str) -> None:
        """``name`` is resolved as ``node`` resolves it (``~/`` and the command line's remappings)."""
        resolved = node.resolve_service_name(name)
        # no global arguments: the node's own name remapping (__node:=) must not rename the helper too
        self.node = rclpy.create_node(f"{node.get_name()}_{suffix}", namespace=node.get_namespace(),
                                      context=node.context, use_global_arguments=False,
                                      start_parameter_services=False)
        self.service = self.node.create_service(srv_type, resolved, callback)
        self._executor = SingleThreadedExecutor(context=node.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{node.get_name()}_{suffix}", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=2.0)
        self.node.destroy_node()
