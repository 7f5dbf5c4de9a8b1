"""vapi: VA-π post-training for autoregressive image generators (`vapi --help`)."""

__version__ = "0.1.0"
