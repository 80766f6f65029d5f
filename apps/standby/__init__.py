"""Layer 5: the CPU standby on GCP (issue 16), beside hibernation. Empty so far."""
