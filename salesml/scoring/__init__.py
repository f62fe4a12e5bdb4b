"""What a score is: one ``Scorer`` (win + timing + drivers + actions) for every caller.

``scorer``: the composite and ``score_features`` (the score rows of the batch, API and report);
``pyfunc``: the MLflow pyfunc that wraps a saved scorer (models-from-code).
"""

from salesml.scoring.scorer import (
    BASIS_BEYOND,
    BASIS_UNSEEN,
    DRIVERS_SHOWN,
    EXPLAIN_COLUMNS,
    OLDEST_CLOSE_KEY,
    SCORE_BASIS_COLUMNS,
    SCORE_COLUMNS,
    TIMING_COLUMNS,
    Scorer,
    load_scorer,
    score_basis,
    score_features,
)

__all__ = [
    "BASIS_BEYOND",
    "BASIS_UNSEEN",
    "DRIVERS_SHOWN",
    "EXPLAIN_COLUMNS",
    "OLDEST_CLOSE_KEY",
    "SCORE_BASIS_COLUMNS",
    "SCORE_COLUMNS",
    "TIMING_COLUMNS",
    "Scorer",
    "load_scorer",
    "score_basis",
    "score_features",
]
