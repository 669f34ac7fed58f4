"""workflow-engine: FastGPT/Dify-style workflow graphs, run in-process or as a service."""

__version__ = "0.1.0"
