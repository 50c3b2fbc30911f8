"""Time and space: the semantic voxel map of posed frames (ROS-free)."""
from .voxel_map import FrameVoxels, MapObject, ObjectStats, VoxelMap, pack, unpack

__all__ = ["FrameVoxels", "MapObject", "ObjectStats", "VoxelMap", "pack", "unpack"]
