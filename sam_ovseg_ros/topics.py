"""Topic names of sam_ovseg_node (relative inputs, private outputs), as CONTRACT.md fixes them."""
COLOR = "color/image"
DEPTH = "depth/image"
COLOR_INFO = "color/camera_info"
DEPTH_INFO = "depth/camera_info"
DEPTH_TO_COLOR = "depth_to_color"  # geometry_msgs/Transform, p_color = R p_depth + t (unaligned cameras)
INPUTS = (COLOR, DEPTH, COLOR_INFO, DEPTH_INFO, DEPTH_TO_COLOR)

OUTPUTS = ("depth_colormap", "instances", "semantic", "overlay", "points", "segments", "vocabulary", "markers")
