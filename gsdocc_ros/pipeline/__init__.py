"""ROS-free inference pipeline: camera frames in, semantic occupancy grids out."""
