"""gpu-reconciler: declarative GPU passthrough and NVIDIA vGPU management for oVirt / RHV."""

__version__ = "0.1.0"
