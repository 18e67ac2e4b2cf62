#!/usr/bin/env bash
# Builds .venv: Python 3.11, ROS 2 Kilted from the ros-kilted-* wheels, torch, the pinned
# requirements, gsdocc_ros itself (messages built with cmake and installed into the venv), and colcon.
# Idempotent: each stage is skipped while the files it depends on are unchanged.
#
# Environment: VENV (default .venv), PYTHON (default python3.11, else python3 if it is 3.11),
# TORCH_SPEC (default torch==2.13.0, the CPU wheel on this machine's disk).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
BUILD="$ROOT/build"
PIP_FLAGS=(--quiet --disable-pip-version-check)

# pip, without the warnings this machine's pip configuration prints for every package.
pip_install() { "$PY" -m pip install "${PIP_FLAGS[@]}" "$@" 2> >(grep -v "^WARNING: Location '" >&2); }
log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
# Run a slow step: say what it is and how long it usually takes first, how long it took after.
timed() {
  local what="$1" expect="$2" start=$SECONDS
  shift 2
  log "$what (usually $expect) ..."
  "$@"
  log "  done in $((SECONDS - start)) s"
}
setup_start=$SECONDS

# The ROS 2 pieces that come from PyPI (see README, "Before you start"): the runtime, the message
# packages the node uses, and the rosidl/ament toolchain that builds our own messages.
ROS_WHEELS=(
  "ros-kilted-rclpy[fastrtps]"
  ros-kilted-std-msgs ros-kilted-sensor-msgs ros-kilted-geometry-msgs
  ros-kilted-visualization-msgs ros-kilted-diagnostic-msgs ros-kilted-std-srvs
  ros-kilted-builtin-interfaces ros-kilted-rosgraph-msgs
  ros-kilted-ament-cmake ros-kilted-ament-cmake-python ros-kilted-ament-package
  ros-kilted-rosidl-default-generators ros-kilted-rosidl-core-generators
  ros-kilted-ament-cmake-include-directories ros-kilted-ament-cmake-ros
  ros-kilted-ament-cmake-ros-core ros-kilted-ament-cmake-gmock ros-kilted-ament-cmake-gtest
  ros-kilted-ament-cmake-pytest catkin_pkg
)

# A stage runs again only when the hash of its inputs changes.
stage_hash() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -c1-16; }
stage_done() { [[ -f "$VENV/.stamp-$1" && "$(cat "$VENV/.stamp-$1")" == "$2" ]]; }
stage_mark() { echo "$2" >"$VENV/.stamp-$1"; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      [[ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" == "3.11" ]]; then
      echo "$candidate"
      return
    fi
  done
  die "Python 3.11 not found (the ROS 2 Kilted wheels and the CPU torch wheel are cp311); set PYTHON"
}

# The tools the message build needs, named before anything is installed.
for tool in cmake cc c++; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found: the messages are built with CMake and a C/C++ compiler (Debian/Ubuntu: apt install cmake g++)"
done

# 1. The virtual environment.
if [[ ! -x "$VENV/bin/python" ]]; then
  log "first set-up: about 2.1 GB into $VENV (torch 0.75 GB, OpenVINO 0.18 GB), 1.5-2.5 min on 2 cores; later runs" \
    "redo only the stages whose inputs changed"
  timed "creating $VENV" "5 s" "$(find_python)" -m venv "$VENV"
  PY="$VENV/bin/python" timed "upgrading pip" "5 s" pip_install --upgrade pip
fi
PY="$VENV/bin/python"

# 2. Third-party packages: ROS 2 wheels, torch, pinned requirements.
deps_hash="$(stage_hash "$ROOT/requirements.txt" "$ROOT/scripts/setup.sh")"
if ! stage_done deps "$deps_hash"; then
  timed "installing ${#ROS_WHEELS[@]} ROS 2 Kilted wheels (rclpy, messages, rosidl/ament build tools)" "15-30 s" \
    pip_install "${ROS_WHEELS[@]}" -c "$ROOT/requirements.txt"
  timed "installing $TORCH_SPEC (CPU wheel)" "20-40 s" pip_install "$TORCH_SPEC" -c "$ROOT/requirements.txt"
  timed "installing requirements.txt (numpy, rosbags, nuscenes-devkit, matplotlib, onnx, onnxruntime, openvino, ...)" \
    "20-60 s" pip_install -r "$ROOT/requirements.txt"
  # The wheels' CMake exports name the Python and numpy include folders of the container
  # they were built in; point them at this interpreter's.
  py_include="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_include="$("$PY" -c 'import numpy; print(numpy.get_include())')"
  { grep -rlZ "/opt/python/cp311-cp311" "$VENV/share" --include='*.cmake' || true; } |
    xargs -0 -r sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/core/include#$np_include#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g"
  stage_mark deps "$deps_hash"
fi

# Build one ament_cmake package from SRC and install it into the venv.
cmake_install() {
  local src="$1" name="$2"
  local python_dir
  python_dir="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
    cmake -S "$src" -B "$BUILD/$name" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DPYTHON_INSTALL_DIR="${python_dir#"$VENV"/}" -DBUILD_TESTING=OFF \
    -Wno-dev >"$BUILD/$name.log" 2>&1 || { tail -n 30 "$BUILD/$name.log" >&2; die "cmake configure of $name failed"; }
  AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
    cmake --build "$BUILD/$name" --target install -j "$(nproc)" >>"$BUILD/$name.log" 2>&1 ||
    { tail -n 30 "$BUILD/$name.log" >&2; die "build of $name failed"; }
}

mkdir -p "$BUILD"

# 3. tf2_msgs: no wheel exists; build the one message type the node needs (scripts/tf2_msgs).
tf_hash="$(stage_hash "$ROOT"/scripts/tf2_msgs/* "$ROOT"/scripts/tf2_msgs/msg/* "$VENV/.stamp-deps")"
if ! stage_done tf2_msgs "$tf_hash"; then
  timed "building tf2_msgs/TFMessage with CMake (no wheel on PyPI)" "5-15 s" \
    cmake_install "$ROOT/scripts/tf2_msgs" tf2_msgs
  stage_mark tf2_msgs "$tf_hash"
fi

# 4. gsdocc_ros: messages, Python package, node executable, launch and config files.
pkg_hash="$(cd "$ROOT" && stage_hash CMakeLists.txt package.xml setup.py msg/* launch/* config/* \
  scripts/gsdocc_node "$VENV/.stamp-tf2_msgs" $(git ls-files -co --exclude-standard gsdocc_ros 2>/dev/null | sort))"
if ! stage_done package "$pkg_hash"; then
  timed "building gsdocc_ros with CMake (its message, the package, the node)" "10-25 s" cmake_install "$ROOT" gsdocc_ros
  # The `gsdocc` command. setup.py declares it for pip installs without ROS, but a pip install of the
  # package into this venv would uninstall the CMake-installed gsdocc_ros (its generated .msg module
  # included), so the same entry point is written here directly.
  printf '#!%s\n# The gsdocc command: entry point gsdocc_ros.tools.cli:main, as declared in setup.py.\nimport sys\nfrom gsdocc_ros.tools.cli import main\nsys.exit(main())\n' \
    "$PY" >"$VENV/bin/gsdocc"
  chmod +x "$VENV/bin/gsdocc"
  stage_mark package "$pkg_hash"
fi

# 5. colcon, for building the package in a colcon workspace the way ROS users do (test_colcon_build.py). An
# environment of its own: colcon-core pins setuptools<80 and brings pytest plugins the node's environment should not get.
colcon_hash="$(stage_hash "$ROOT/requirements-colcon.txt")"
if ! stage_done colcon "$colcon_hash"; then
  [[ -x "$VENV/colcon/bin/python" ]] || "$PY" -m venv "$VENV/colcon"
  PY="$VENV/colcon/bin/python" timed "installing colcon (requirements-colcon.txt) into $VENV/colcon" "10-20 s" \
    pip_install -r "$ROOT/requirements-colcon.txt"
  ln -sfn ../colcon/bin/colcon "$VENV/bin/colcon"
  stage_mark colcon "$colcon_hash"
fi

"$PY" - <<'EOF' || die "the installed environment does not import; see the messages above"
import rclpy, torch, numpy
from gsdocc_ros.msg import SemanticVoxelGrid
from tf2_msgs.msg import TFMessage
EOF
log "ready: $VENV (torch $("$PY" -c 'import torch; print(torch.__version__)'); set-up took $((SECONDS - setup_start)) s)"
