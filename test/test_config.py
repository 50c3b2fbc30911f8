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
    ("classes", ["chair", "table", "chair"], "duplicate names at positions \\[2\\]"),
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
    with pytest.raises(ValueError, match=r"v.txt is not a vocabulary: classes has duplicate names at positions \[2\]"):
        vocabulary.load(str(f))
    f.write_text("mug\ntable\n")
    assert vocabulary.load(str(f)) == ["mug", "table"]
    with pytest.raises(FileNotFoundError, match="neither a file nor one of the bundled"):
        vocabulary.load("ade20k_1500")


@pytest.mark.parametrize("content,rule", [
    ("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
     "line 1 has a character other than letters, digits, spaces"),
    ("chair\n" + "x" * 101 + "\n", "line 2 is longer than 100 characters"),
    ("".join(f"name {i}\n" for i in range(4097)), "more than 4096 names"),
    (b"\xff\xfe\x00binary", "not UTF-8 text"),
    ("x" * (1 << 20) + "\n", "bytes, at most 1048576"),
])
def test_a_file_that_is_not_a_vocabulary_is_refused_by_name_and_rule(tmp_path, content, rule):
    """The message names the file and the rule it broke, and never repeats the file's content."""
    f = tmp_path / "secret.txt"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError) as err:
        vocabulary.load(str(f))
    msg = str(err.value)
    assert str(f) in msg and rule in msg
    msg = msg.replace(str(f), "")
    assert "root" not in msg and "daemon" not in msg and "xxxxx" not in msg and "name 1" not in msg


def test_class_names_and_strings_are_bounded():
    with pytest.raises(ConfigError, match="position 1 has a character other than"):
        config.validate_classes(["chair", "a:b"])
    with pytest.raises(ConfigError, match="at most 4096"):
        config.validate_classes([f"n{i}" for i in range(4097)])
    assert config.validate_classes(["t-shirt", "men's shoe", "tv/monitor", "café", "chest of drawers, chest"])
    cfg = NodeConfig()
    cfg.map.frame = "m" * 5000
    with pytest.raises(ConfigError, match="map.frame: longer than 4096"):
        config.validate(cfg)
    cfg = NodeConfig(vocabulary_file="ade20k_150", vocabulary_list="scannet_200")
    with pytest.raises(ConfigError, match="not both"):
        config.validate(cfg)
