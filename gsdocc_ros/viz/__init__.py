"""Pictures of grids and scores (matplotlib), shared by `gsdocc render`, `gsdocc eval` and the demo."""
