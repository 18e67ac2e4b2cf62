"""The node's step measured: stage timing, the machine it runs on, FLOPs, host waits, the report of `gsdocc bench`.
Importing the package imports nothing heavy; config is torch-free, the other modules need torch."""
