"""The close-timing model as it predicts: when an open deal closes (see docs/timing.md)."""
