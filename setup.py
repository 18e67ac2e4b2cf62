"""pip install for the pure-Python part of gsdocc_ros (model, pipeline, tools) and the `gsdocc` command.

On a ROS 2 install the package is built by colcon from CMakeLists.txt instead; scripts/setup.sh
does both into .venv so that the messages and the command sit side by side.
"""

from setuptools import find_packages, setup

setup(
    name="gsdocc_ros",
    version="0.1.0",
    description="GSD-OCC camera-only 3D semantic occupancy for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["gsdocc_ros", "gsdocc_ros.*"]),
    install_requires=["numpy", "torch", "pillow", "pyyaml", "tqdm", "matplotlib", "opencv-python-headless"],
    extras_require={"tools": ["rosbags", "nuscenes-devkit", "simplejpeg"]},
    entry_points={"console_scripts": ["gsdocc = gsdocc_ros.tools.cli:main"]},
)
