"""What a score is: one ``Scorer`` (win + timing + drivers + actions) for every caller.

``scorer``: the composite and ``score_features`` (the score rows of the batch, API and report);
``pyfunc``: the MLflow pyfunc that wraps a saved scorer (models-from-code).
"""

from salesml.scoring.scorer import (
    DRIVERS_SHOWN,
    EXPLAIN_COLUMNS,
    SCORE_COLUMNS,
    TIMING_COLUMNS,
    Scorer,
    load_scorer,
    score_features,
)

__all__ = [
    "DRIVERS_SHOWN",
    "EXPLAIN_COLUMNS",
    "SCORE_COLUMNS",
    "TIMING_COLUMNS",
    "Scorer",
    "load_scorer",
    "score_features",
]
