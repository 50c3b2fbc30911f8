"""Shared pieces of the launch files: the node's launch arguments and their parameter overrides."""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

# launch argument -> node parameter; an empty value keeps config/sam_ovseg.yaml's entry
NODE_ARGS = {
    "profile": ("profile", "default | tiny (random-weight tiny models)"),
    "device": ("device", "auto | cuda | cpu"),
    "segmenter": ("segmenter", "sam (SAM + OVSeg, the original) | sam2 (SAM 2.1 + OVSeg) | sam3 (SAM 3 text prompts)"),
    "sam2_model_type": ("sam2.model_type", "hiera_tiny | hiera_small | hiera_base_plus | hiera_large"),
    "sam_input": ("sam.input", "depth | rgb: the image SAM segments"),
    "sam_model_type": ("sam.model_type", "vit_h | vit_l | vit_b"),
    "sam_checkpoint": ("sam.checkpoint", "SAM .pth (default: <weights_dir>/sam_vit_h_4b8939.pth)"),
    "ovseg_checkpoint": ("ovseg.checkpoint", "OVSeg .pth (default: <weights_dir>/ovseg_swinbase_vitL14_ft_mpt.pth)"),
    "weights_dir": ("weights_dir", "folder of the checkpoints (default $SAM_OVSEG_WEIGHTS or ~/.cache/sam_ovseg_ros)"),
    "vocabulary": ("vocabulary_file", "bundled list (ade20k_150, coco_stuff_171, scannet_200) or a file (start-up)"),
    "fusion_mode": ("fusion.mode", "vote | mask_clip"),
    "transport": ("transport", "raw | compressed (image_transport's compressed colour + compressedDepth depth)"),
    "map_frame": ("map.frame", "fixed frame of the semantic map (poses from /tf)"),
    "map_save_dir": ("map.save_dir", "folder of the map's file (loaded at start-up, autosaved) and its exports"),
}
# transport: compressed -> the node's image inputs and the suffix image_transport adds to a raw topic
COMPRESSED_INPUTS = {"color/image": ("color/image/compressed", "/compressed"),
                     "depth/image": ("depth/image/compressedDepth", "/compressedDepth")}


def image_remaps(context, remaps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """With transport:=compressed, image inputs become their compressed topics (a raw topic name given
    gets image_transport's suffix); other remaps are unchanged."""
    if LaunchConfiguration("transport").perform(context) != "compressed":
        return remaps
    out = []
    for node_input, topic in remaps:
        if node_input in COMPRESSED_INPUTS:
            node_input, suffix = COMPRESSED_INPUTS[node_input]
            topic = topic if topic.endswith(suffix) else topic + suffix
        out.append((node_input, topic))
    return out


def declare_node_args():
    args = [DeclareLaunchArgument(name, default_value="", description=desc) for name, (_, desc) in NODE_ARGS.items()]
    args.append(DeclareLaunchArgument("classes", default_value="",
                                      description='comma-separated class names, e.g. "chair, table, mug"'))
    args.append(DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"))
    return args


def node_overrides(context) -> dict:
    """Parameters from the non-empty node arguments (evaluated inside an OpaqueFunction)."""
    out = {}
    for name, (param, _) in NODE_ARGS.items():
        value = LaunchConfiguration(name).perform(context)
        if value:
            out[param] = value
    classes = LaunchConfiguration("classes").perform(context)
    if classes:
        out["classes"] = [c.strip() for c in classes.split(",") if c.strip()]
    return out
