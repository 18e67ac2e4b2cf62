"""Files and bags, ROS-free: grid files, ROS 2 bags (formats, messages, poses), the nuScenes reader, the synthetic
street scene. Nothing here imports rclpy or a ROS message package; the tools and the node build on it."""
