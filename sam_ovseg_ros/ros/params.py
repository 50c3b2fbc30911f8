"""The node's ROS parameters: every leaf of ``NodeConfig`` declared under its dotted name, described
(meaning, unit, choices, read-only), validated before a change is accepted, and applied at once.

A change is checked on a copy of the current config (``on_set``), so a rejected value never reaches
the pipeline; accepted changes replace the config in one assignment (``post_set``), and the node is
told what changed. Parameters that only act at start-up are declared read-only.
"""
from __future__ import annotations

import copy
import threading
from typing import Callable

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter

from sam_ovseg_ros.core import config as config_mod
from sam_ovseg_ros.core import vocabulary
from sam_ovseg_ros.core.config import ConfigError, NodeConfig

# list parameters: an empty default has no type of its own
_LIST_TYPES = {"classes": Parameter.Type.STRING_ARRAY, "registration.depth_to_color": Parameter.Type.DOUBLE_ARRAY}


def constraints(name: str) -> str:
    return f"one of: {', '.join(config_mod.CHOICES[name])}" if name in config_mod.CHOICES else ""


def is_config_param(name: str) -> bool:
    try:
        config_mod.get_leaf(NodeConfig(), name)
        return True
    except AttributeError:
        return False


class NodeParameters:
    """Declares, validates and applies the parameters of ``node``; ``config()`` is the config in force."""

    def __init__(self, node, on_change: Callable[[NodeConfig, NodeConfig], None]) -> None:
        self.node, self.on_change = node, on_change
        self._lock = threading.Lock()
        self._cfg = self._declare()
        node.add_pre_set_parameters_callback(self._with_list_classes)
        node.add_on_set_parameters_callback(self._on_set)
        node.add_post_set_parameters_callback(self._post_set)

    def config(self) -> NodeConfig:
        with self._lock:
            return self._cfg

    def _declare(self) -> NodeConfig:
        cfg = NodeConfig()
        for name, default in config_mod.iter_leaves(cfg):
            desc = ParameterDescriptor(description=config_mod.describe(name), additional_constraints=constraints(name),
                                       read_only=name in config_mod.STARTUP_ONLY)
            value = (default or _LIST_TYPES[name]) if isinstance(default, list) else default
            param = self.node.declare_parameter(name, value, desc)
            if param.value is None:
                continue
            try:
                config_mod.set_leaf(cfg, name, param.value)
            except ConfigError as exc:
                raise ConfigError(f"parameter {exc}") from None
        try:
            config_mod.validate(cfg)  # before any file is read: both vocabulary sources set is an error
            apply_vocabulary(cfg)
            config_mod.validate(cfg)
        except ConfigError as exc:
            raise ConfigError(f"invalid parameters: {exc}") from None
        if cfg.vocabulary_file or cfg.vocabulary_list:  # `classes` shows the names in use (no callbacks yet)
            self.node.set_parameters([Parameter("classes", Parameter.Type.STRING_ARRAY, cfg.classes)])
        return cfg

    def _with_list_classes(self, params: list[Parameter]) -> list[Parameter]:
        """Pre-set hook keeping `classes` the vocabulary in use: a new vocabulary_list also sets `classes` to
        its names; `classes` set alone clears vocabulary_list (a bad list is left for validation to reject)."""
        names = {p.name for p in params}
        for p in params:
            if p.name == "vocabulary_list" and p.value and "classes" not in names:
                try:
                    classes = vocabulary.load_bundled(p.value)
                except (OSError, ValueError):
                    return params
                return [*params, Parameter("classes", Parameter.Type.STRING_ARRAY, classes)]
        if "classes" in names and "vocabulary_list" not in names and self.config().vocabulary_list:
            return [*params, Parameter("vocabulary_list", Parameter.Type.STRING, "")]
        return params

    def candidate(self, params: list[Parameter]) -> NodeConfig:
        """The config these changes would give; ConfigError names the first bad one."""
        with self._lock:
            cfg = copy.deepcopy(self._cfg)
        for p in params:
            if p.name in config_mod.STARTUP_ONLY:
                raise ConfigError(f"{p.name} only takes effect at start-up; restart the node to change it")
            if p.name == "use_sim_time" or not is_config_param(p.name):
                continue
            config_mod.set_leaf(cfg, p.name, p.value if p.value is not None else [])
        if any(p.name == "vocabulary_list" for p in params) and cfg.vocabulary_list:
            config_mod.validate(cfg)  # the list name is one of the bundled ones before anything is read
            apply_vocabulary(cfg)
        config_mod.validate(cfg)
        return cfg

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        try:
            self.candidate(params)
        except ConfigError as exc:
            self.node.get_logger().warning(f"rejected parameter change: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _post_set(self, params: list[Parameter]) -> None:
        cfg = self.candidate(params)
        with self._lock:
            old, self._cfg = self._cfg, cfg
        self.on_change(old, cfg)


def apply_vocabulary(cfg: NodeConfig) -> None:
    """``classes`` from ``vocabulary_file`` (start-up) or the bundled ``vocabulary_list`` when one is set."""
    try:
        if cfg.vocabulary_file:
            cfg.classes = vocabulary.load(cfg.vocabulary_file)
        elif cfg.vocabulary_list:
            cfg.classes = vocabulary.load_bundled(cfg.vocabulary_list)
    except (OSError, ValueError) as exc:
        which = "vocabulary_file" if cfg.vocabulary_file else "vocabulary_list"
        raise ConfigError(f"{which}: {exc}") from None
