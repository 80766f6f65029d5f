"""DumontAgent: runs on each GPU machine. It must never import Django; it shares only wire
formats with the control plane."""

__version__ = "0.1.0"
