"""Time and space, ROS-free: ``tracking`` (instance ids kept across frames), ``voxel_map`` (the semantic
voxel map with per-voxel class evidence and objects), ``mapper`` (posed frames into the map, snapshots,
files). Imports ``core`` only."""
from sam_ovseg_ros.mapping.voxel_map import FrameVoxels, MapObject, ObjectStats, VoxelMap, pack, unpack

__all__ = ["FrameVoxels", "MapObject", "ObjectStats", "VoxelMap", "pack", "unpack"]
