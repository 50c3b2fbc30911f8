"""The package built as ROS 2 users build it: ``colcon build`` (plain and ``--symlink-install``) of this
checkout in a temporary workspace, with colcon from PyPI against the environment's ROS 2 wheels; the
installed package imports its own messages, modules, kernels and bundled files, and its executable
(what ``ros2 run sam_ovseg_ros sam_ovseg_node`` runs) starts and stops cleanly."""
import signal
import time

import pytest
from workspace import PACKAGE, REPO, Workspace

pytestmark = pytest.mark.workspace

# run from the workspace's parent with install/setup.bash sourced: every import must come from install/
IMPORT_ALL = r'''
import importlib, json, pathlib, sys
import {pkg}
root = pathlib.Path(sys.argv[1]).resolve()
names = sorted(p.relative_to(root).with_suffix("").as_posix().replace("/", ".")
               for p in root.rglob("*.py") if "__pycache__" not in p.parts and p.name != "__init__.py"
               and p.relative_to(root).parts[0] not in ("msg", "srv"))  # generated: imported below
where = {{}}
for n in names:
    m = importlib.import_module("{pkg}." + n)
    where[n] = m.__file__
from {pkg}.msg import ObjectArray, SegmentArray, Vocabulary
from {pkg}.srv import QueryObjects
from {pkg}.core import kernels, vocabulary
where["msg"] = sys.modules["{pkg}.msg"].__file__
where["srv"] = sys.modules["{pkg}.srv"].__file__
print(json.dumps({{"modules": where, "kernels": kernels.where, "available": kernels.available,
                  "vocabulary": str(vocabulary.resolve("ade20k_150"))}}))
'''


def source_modules() -> set[str]:
    root = REPO / PACKAGE
    return {p.relative_to(root).with_suffix("").as_posix().replace("/", ".")
            for p in root.rglob("*.py") if "__pycache__" not in p.parts and p.name != "__init__.py"}


def check_install(ws: Workspace) -> dict:
    import json

    script = ws.root / "import_all.py"
    script.write_text(IMPORT_ALL.format(pkg=PACKAGE))
    done = ws.run(f"python {script} {ws.site_packages / PACKAGE}", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(got["modules"]) - {"msg", "srv"} == source_modules()  # every module of the checkout is installed
    for name, path in got["modules"].items():
        assert path.startswith(str(ws.install)), (name, path)  # ... and imported from the install space
    assert got["available"] and got["kernels"].startswith(str(ws.install)), got["kernels"]
    vocab = "config/vocabularies/ade20k_150.txt"  # from share/ (copies) or the workspace's src/ (symlinks)
    assert got["vocabulary"] in (str(ws.install / PACKAGE / "share" / PACKAGE / vocab), str(ws.src / vocab))
    for exe in ("sam_ovseg_node", "sam_ovseg_replay", "sam_ovseg_ovseg"):
        assert (ws.install / PACKAGE / "lib" / PACKAGE / exe).is_file(), exe
    share = ws.install / PACKAGE / "share" / PACKAGE
    for f in ("launch/rosbag.launch.py", "launch/realsense.launch.py", "launch/common.py", "config/sam_ovseg.yaml",
              "msg/SegmentArray.msg", "srv/QueryObjects.srv", "package.xml"):
        assert (share / f).is_file(), f
    return got


def test_colcon_build_installs_a_complete_package(ros_workspace):
    check_install(ros_workspace)


def test_colcon_symlink_install(tmp_path):
    ws = Workspace(tmp_path / "ws", symlink=True)
    done = ws.build()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    check_install(ws)
    init = ws.site_packages / PACKAGE / "__init__.py"
    assert init.is_symlink() and init.resolve() == (ws.src / PACKAGE / "__init__.py").resolve()  # ours, not rosidl's
    (ws.src / PACKAGE / "_edited_after_build.py").write_text("X = 1\n")
    done = ws.build(fresh=False)  # again over the same install: a new module appears, ours stays the package root
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (ws.site_packages / PACKAGE / "_edited_after_build.py").is_symlink()
    assert init.resolve() == (ws.src / PACKAGE / "__init__.py").resolve()


def test_installed_node_starts_and_stops(ros_workspace, tmp_path):
    """lib/sam_ovseg_ros/sam_ovseg_node is what ``ros2 run`` executes."""
    exe = ros_workspace.install / PACKAGE / "lib" / PACKAGE / "sam_ovseg_node"
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = ros_workspace.popen(f"{exe} --ros-args -r __ns:=/t_colcon -p profile:=tiny -p device:=cpu "
                                   f"-p weights_dir:={tmp_path / 'w'}", stdout=out, stderr=out)
        try:
            end = time.monotonic() + 180
            while "ready: waiting for" not in log.read_text() and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.2)
            assert "ready: waiting for" in log.read_text(), log.read_text()[-3000:]
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert f"compiled frame kernels: {ros_workspace.install}" in text  # the installed build, not the checkout's
