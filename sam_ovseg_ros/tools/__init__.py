"""Tools around the node: ``replay`` (play/record bags without the ROS CLI, ``sam_ovseg_replay``),
``bagio`` (bag types, ROS 1 -> ROS 2), ``samplebag`` (bags of the bundled frames), ``demo`` (``make demo``)
and ``render`` (RViz-like pictures made offline). May import every other layer.
"""
