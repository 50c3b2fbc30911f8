"""A colcon workspace holding a copy of this checkout, built the way ROS 2 users build it.

``colcon`` comes from PyPI (requirements.txt) and builds against the ROS 2 wheels of the running
interpreter's environment (its prefix is the underlay, as /opt/ros/<distro> is on a ROS install).
``run`` executes a command with ``install/setup.bash`` sourced, from outside the checkout, so
that what it imports is what the workspace installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sam_ovseg_ros"
# what a clone holds besides the sources: never copied into the workspace
_SKIP = {".git", ".venv", "build", "install", "log", "out", "__pycache__", ".pytest_cache", ".ruff_cache"}


def colcon_available() -> bool:
    return shutil.which("colcon", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")) \
        is not None


def underlay_env() -> dict[str, str]:
    """The environment colcon builds in: the interpreter's prefix is the ROS underlay."""
    prefix = sys.prefix
    env = dict(os.environ)
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        env[var] = os.pathsep.join(p for p in (prefix, env.get(var, "")) if p)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env


class Workspace:
    def __init__(self, root: Path, symlink: bool = False) -> None:
        self.root, self.symlink = root, symlink
        self.src = root / "src" / PACKAGE
        self.install = root / "install"

    def build(self, timeout: float = 600, fresh: bool = True) -> subprocess.CompletedProcess:
        """Copy the checkout into src/ and ``colcon build`` it (``--symlink-install`` if asked); ``fresh=False``
        builds again over the existing workspace, as users do after an edit."""
        if fresh:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.copytree(REPO, self.src, ignore=lambda d, names: [n for n in names if n in _SKIP])
        cmd = ["colcon", "build", "--event-handlers", "console_direct-",
               "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}"]
        if self.symlink:
            cmd.insert(2, "--symlink-install")
        return subprocess.run(cmd, cwd=self.root, env=underlay_env(), capture_output=True, text=True, timeout=timeout)

    @property
    def site_packages(self) -> Path:
        v = sys.version_info
        return self.install / PACKAGE / "lib" / f"python{v.major}.{v.minor}" / "site-packages"

    def popen(self, command: str, cwd: Path | None = None, **kw) -> subprocess.Popen:
        """``command`` in bash with the workspace sourced, as a user's terminal after ``source install/setup.bash``."""
        script = f"source {self.install / 'setup.bash'} && exec {command}"
        return subprocess.Popen(["bash", "-c", script], cwd=cwd or self.root.parent, env=underlay_env(), **kw)

    def run(self, command: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        proc = self.popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"timed out after {timeout} s: {command}\n{out[-3000:]}") from None
        return subprocess.CompletedProcess(command, proc.returncode, out, None)
