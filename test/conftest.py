"""Test setup: DDS stays on loopback, data lookup, one rclpy context per test process."""
import os
import random
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(10, 99)))

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "scannet_scene0000_00"


def shared_dir() -> Path:
    """../shared (CONTRACT, data, golden OVSeg files): $SAM_OVSEG_SHARED, next to the repo, or /work/shared."""
    for cand in (os.environ.get("SAM_OVSEG_SHARED"), REPO.parent / "shared", Path("/work/shared")):
        if cand and (Path(cand) / "ovseg_reference").is_dir():
            return Path(cand)
    raise FileNotFoundError("shared data not found: set SAM_OVSEG_SHARED to the folder holding "
                            "ovseg_reference/ and data/")


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()


@pytest.fixture(scope="session")
def rclpy_context():
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()
