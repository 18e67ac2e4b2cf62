"""gsdocc_ros: GSD-OCC camera-only 3D semantic occupancy for ROS 2."""

__version__ = "0.1.0"
