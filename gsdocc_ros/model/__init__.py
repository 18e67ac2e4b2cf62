"""The GSD-OCC network in plain PyTorch; attribute names follow the official checkpoint.

Shape legend of every module here: B batch, N cameras, C channels, D depth bins, H, W image or feature-map rows and
columns, X, Y, Z voxels along ego x (forward), y (left), z (up). BEV tensors are [B,C,Y,X] (rows = ego y, columns =
ego x); voxel tensors are [B,C,Y,X,Z]; the output grid is indexed (X, Y, Z).
"""
