"""Topic names of sam_ovseg_node (relative inputs, private outputs), as the launch files and users rely on them."""
COLOR = "color/image"
DEPTH = "depth/image"
COLOR_INFO = "color/camera_info"
DEPTH_INFO = "depth/camera_info"
DEPTH_TO_COLOR = "depth_to_color"  # geometry_msgs/Transform, p_color = R p_depth + t (unaligned cameras)
INPUTS = (COLOR, DEPTH, COLOR_INFO, DEPTH_INFO, DEPTH_TO_COLOR)
# transport: compressed (sensor_msgs/CompressedImage, named as image_transport names them)
COLOR_COMPRESSED = COLOR + "/compressed"
DEPTH_COMPRESSED = DEPTH + "/compressedDepth"

# Private outputs (~/name); every list of them (node, demo, tests) comes from here.
FRAME_OUTPUTS = ("depth_colormap", "instances", "semantic", "overlay", "points", "segments", "markers")  # per frame
OUTPUTS = (*FRAME_OUTPUTS, "vocabulary")  # + latched, on change
MAP_OUTPUTS = ("map/points", "map/objects", "map/markers")  # latched; when map.enabled
MAP_SERVICES = ("map/clear", "map/save")  # std_srvs/Trigger
MAP_QUERY = "map/query"  # sam_ovseg_ros/srv/QueryObjects
MAP_QUERY_MARKERS = "map/query_markers"  # the last query's hits, latched
