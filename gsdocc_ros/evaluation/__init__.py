"""Occ3D-nuScenes evaluation, ROS-free: mIoU and RayIoU accumulated over scenes (sharded over torchrun ranks), from
prediction files or from the model run over nuScenes keyframes."""
