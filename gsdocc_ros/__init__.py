"""gsdocc_ros: GSD-OCC camera-only 3D semantic occupancy for ROS 2."""

from pkgutil import extend_path

# The generated message module gsdocc_ros.msg is installed by the CMake build (colcon or
# scripts/setup.sh); a source checkout first on sys.path still finds it there.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
