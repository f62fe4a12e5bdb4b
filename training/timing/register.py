"""Log the close-timing model's holdout figures to MLflow, on the win model's run.

The timing model travels in the win model's registered bundle (``timing/`` beside the win
model), so it has no registry entry of its own: its figures are metrics of that run.
"""

from __future__ import annotations

from salesml.models.registry import configure
from training.timing.fit import TimingTrainingResult


def log_timing(run_id: str, result: TimingTrainingResult) -> None:
    """Add the timing model's holdout figures to the win model's run (the same bundle)."""
    client = configure()
    for name, value in result.holdout_metrics.items():
        if value is not None:
            client.log_metric(run_id, f"timing_{name}", float(value))
    for baseline, metrics in result.baseline_metrics.items():
        for name, value in metrics.items():
            if value is not None:
                client.log_metric(run_id, f"timing_baseline_{baseline}_{name}", float(value))
    client.set_tag(run_id, "timing_conformal", str(result.bundle.metadata.get("conformal")))
