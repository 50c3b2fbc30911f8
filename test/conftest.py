"""Test setup: DDS stays on loopback, the fixtures folder, one rclpy context per test process."""
import os
import random
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(10, 99)))

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "test" / "data"  # every fixture the suite reads; provenance in its README.md


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def ros_workspace(tmp_path_factory):
    """This checkout built by colcon in a temporary workspace (once per session; see workspace.py)."""
    from workspace import Workspace, colcon_available

    if not colcon_available():
        pytest.fail("colcon is not installed (requirements.txt has it; make setup installs it)")
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    done = ws.build()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return ws


@pytest.fixture(scope="session")
def rclpy_context():
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


def pytest_collection_modifyitems(session, config, items):
    """SAM_OVSEG_TEST_ORDER=reverse | shuffle[:SEED] runs the suite in another order (no test may rely on
    another having run first). Tests stay grouped by file, so module-scoped nodes start once per file."""
    order = os.environ.get("SAM_OVSEG_TEST_ORDER", "")
    if not order:
        return
    groups: dict = {}
    for item in items:
        groups.setdefault(item.fspath, []).append(item)
    files = list(groups.values())
    if order == "reverse":
        files = [list(reversed(g)) for g in reversed(files)]
    elif order.startswith("shuffle"):
        rng = random.Random(int(order.partition(":")[2] or 0))
        rng.shuffle(files)
        for g in files:
            rng.shuffle(g)
    else:
        raise pytest.UsageError(f"SAM_OVSEG_TEST_ORDER must be reverse or shuffle[:SEED], got {order!r}")
    items[:] = [item for g in files for item in g]


@pytest.fixture(params=["compiled", "numpy"])
def backend(request, monkeypatch) -> str:
    """Runs a test on the compiled kernels (sam_ovseg_ros/kernels.c, which make setup builds: a
    missing build fails here, not silently slower) and again on the NumPy paths they replace."""
    from sam_ovseg_ros.core import kernels

    if request.param == "compiled":
        assert kernels.available, f"compiled kernels: {kernels.where}"
    else:
        monkeypatch.setattr(kernels, "available", False)
    return request.param


# Run by launch_testing (CMakeLists.txt add_launch_test, and test_launch_files.py in a sourced workspace),
# not imported by pytest: it starts the node by package name, which needs the package installed.
collect_ignore = ["test_launch_node.py"]
