"""Time and space: the semantic voxel map of posed frames (ROS-free)."""
from .voxel_map import MapObject, ObjectStats, VoxelMap, pack, unpack

__all__ = ["MapObject", "ObjectStats", "VoxelMap", "pack", "unpack"]
