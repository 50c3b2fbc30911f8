#!/usr/bin/env bash
# Create (or update) the project's virtual environment: pinned Python deps, the ROS 2 wheels,
# and our msg/ interfaces built with cmake against those wheels and installed into the venv.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."

"$PYTHON" - <<'PY' || { echo "error: Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
command -v cc >/dev/null || command -v gcc >/dev/null || {
  echo "error: a C compiler is needed to build msg/ (Debian/Ubuntu: apt install build-essential python3-dev)" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
$PIP install -q -r requirements.txt -c requirements.lock
$PIP install -q --no-deps -e . --config-settings editable_mode=compat

# Interfaces (msg/) into the venv prefix; the Python package itself is used from this checkout.
VENV_ABS=$(cd "$VENV" && pwd)
export AMENT_PREFIX_PATH="$VENV_ABS"
"$VENV/bin/cmake" -S . -B build/msgs -DCMAKE_PREFIX_PATH="$VENV_ABS" -DCMAKE_INSTALL_PREFIX="$VENV_ABS" \
  -DPython3_EXECUTABLE="$VENV_ABS/bin/python" -DBUILD_TESTING=OFF -DSAM_OVSEG_INSTALL_PYTHON=OFF > build/cmake.log 2>&1 \
  || { mkdir -p build; cat build/cmake.log >&2; exit 1; }
"$VENV/bin/cmake" --build build/msgs -j"$(nproc)" >> build/cmake.log 2>&1 || { tail -50 build/cmake.log >&2; exit 1; }
"$VENV/bin/cmake" --install build/msgs >> build/cmake.log 2>&1 || { tail -50 build/cmake.log >&2; exit 1; }
# tf2_msgs/TFMessage (for /tf and /tf_static) is not on PyPI: build the standard interface the same way,
# only when no installed tf2_msgs provides it.
if ! "$VENV/bin/python" -c 'import tf2_msgs.msg' 2>/dev/null; then
  "$VENV/bin/cmake" -S interfaces/tf2_msgs -B build/tf2_msgs -DCMAKE_PREFIX_PATH="$VENV_ABS" \
    -DCMAKE_INSTALL_PREFIX="$VENV_ABS" -DPython3_EXECUTABLE="$VENV_ABS/bin/python" -DBUILD_TESTING=OFF \
    >> build/cmake.log 2>&1 || { tail -50 build/cmake.log >&2; exit 1; }
  "$VENV/bin/cmake" --build build/tf2_msgs -j"$(nproc)" >> build/cmake.log 2>&1 || { tail -50 build/cmake.log >&2; exit 1; }
  "$VENV/bin/cmake" --install build/tf2_msgs >> build/cmake.log 2>&1 || { tail -50 build/cmake.log >&2; exit 1; }
fi
# rosidl writes an empty sam_ovseg_ros/__init__.py next to msg/: remove it so the checkout's package
# is the one imported; it extends its __path__ to the generated msg/ (see sam_ovseg_ros/__init__.py).
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$SITE/sam_ovseg_ros/__init__.py"
rm -rf "$SITE/sam_ovseg_ros/__pycache__"
"$VENV/bin/python" -c 'from sam_ovseg_ros.msg import SegmentArray, Vocabulary, ObjectArray; from sam_ovseg_ros.srv import QueryObjects; from tf2_msgs.msg import TFMessage; from std_srvs.srv import Trigger; import rclpy, torch, segment_anything, open_clip' \
  || { echo "error: the environment in $VENV does not import" >&2; exit 1; }
echo "environment ready: $VENV"
