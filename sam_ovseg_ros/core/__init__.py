"""The ROS-free core: numpy/torch in, plain dataclasses out. Never imports rclpy or message packages.

``config`` (the typed config tree the ROS parameters mirror), ``vocabulary`` (class-name lists),
``frame_types`` (what one frame carries: Frame, FrameResult, Segment, InputError), ``depth``
(REP 118 units, SegmentAnyRGBD's depth rendering), ``registration`` (depth into the colour camera),
``instances`` (masks -> instance image, per-instance measures), ``fusion`` (a class per mask),
``cloud`` (back-projection, point records), ``overlay`` (the human view), ``kernels`` (compiled
loops of kernels.c with NumPy fallbacks), ``frame_pipeline`` (one frame through all of them),
``weights`` (checkpoint files: checksums, downloads, layout checks).
"""
