"""The typed configuration, its validation, and the bundled vocabularies."""
import pytest

from sam_ovseg_ros.core import config, vocabulary
from sam_ovseg_ros.core.config import ConfigError, NodeConfig


def test_every_leaf_has_a_dotted_name_and_roundtrips():
    cfg = NodeConfig()
    names = [n for n, _ in config.iter_leaves(cfg)]
    for required in ("profile", "device", "classes", "sam.input", "sam.model_type", "sam.checkpoint",
                     "ovseg.checkpoint", "depth.colormap", "depth.normalization", "sync.slop", "qos.reliability"):
        assert required in names
    config.set_leaf(cfg, "sync.slop", 1)  # ROS gives an int for 1.0
    assert cfg.sync.slop == 1.0 and isinstance(cfg.sync.slop, float)
    config.validate(cfg)


@pytest.mark.parametrize("name,value,match", [
    ("sam.input", "lidar", "sam.input must be one of"),
    ("depth.colormap", "not_a_cmap", "not a matplotlib colormap"),
    ("classes", [], "must not be empty"),
    ("classes", ["a", " ", "b"], "empty names"),
    ("classes", ["chair", "table", "chair"], "duplicate names: \\['chair'\\]"),
    ("sync.slop", -0.1, "sync.slop"),
    ("registration.depth_to_color", [1.0, 2.0], "depth_to_color"),
    ("depth.min_m", 9.0, "min_m"),
])
def test_bad_values_are_rejected_with_their_name(name, value, match):
    cfg = NodeConfig()
    config.set_leaf(cfg, name, value)
    with pytest.raises(ConfigError, match=match):
        config.validate(cfg)


def test_type_errors():
    with pytest.raises(ConfigError, match="must be an integer"):
        config.set_leaf(NodeConfig(), "qos.depth", "five")
    with pytest.raises(ConfigError, match="unknown parameter"):
        config.set_leaf(NodeConfig(), "sam.nope", 1)


@pytest.mark.parametrize("name,count,first", [("ade20k_150", 150, "wall"), ("coco_stuff_171", 171, "person"),
                                              ("scannet_200", 200, "wall")])
def test_bundled_vocabularies(name, count, first):
    names = vocabulary.load(name)
    assert len(names) == count and names[0] == first


def test_user_vocabulary_file(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("# my robot\nmug\n\n  table \nmug\n")
    with pytest.raises(ConfigError, match="duplicate"):
        vocabulary.load(str(f))
    f.write_text("mug\ntable\n")
    assert vocabulary.load(str(f)) == ["mug", "table"]
    with pytest.raises(FileNotFoundError, match="neither a file nor one of the bundled"):
        vocabulary.load("ade20k_1500")
