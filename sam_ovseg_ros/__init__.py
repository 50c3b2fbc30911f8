"""sam_ovseg_ros: SAM instances labelled by OVSeg on RGB-D frames, for ROS 2.

Layers, each importing only those above it in this list:

- ``core``        ROS-free frame work: config, depth rendering, registration, instances, fusion, cloud,
                  overlay, compiled kernels, the frame pipeline, vocabularies, checkpoint files.
- ``segmenters``  SAM, SAM 2 and SAM 3 and the mask generator SAM and SAM 2 share.
- ``ovseg``       OVSeg (mask-adapted CLIP) ported to plain PyTorch.
- ``model_registry``  builds the segmenter + classifier pair a config asks for.
- ``mapping``     tracking, the voxel map, the mapper (ROS-free).
- ``ros``         the node and everything that touches rclpy or messages.
- ``tools``       replay/record of bags, sample bags, the demo, offline rendering.

The generated message classes (``sam_ovseg_ros.msg``) may be installed in another directory than
this checkout (pip/venv path), so the package path is extended to every ``sam_ovseg_ros`` directory
on ``sys.path``.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
