"""Drivers a sales rep understands: exact TreeSHAP mapped to probability points, by concept.

See ``docs/drivers.md``. Public API:

- ``contributions(bundle, features)`` — every feature's contribution (probability points) and
  the base, adding up to the shown probability;
- ``explain(bundle, features, top=5)`` — per deal, the top drivers by concept, with text;
- ``global_drivers(bundle, features, by=None)`` and ``compare_importance(old, new)``;
- ``attribute_change(old_rows, new_rows)`` — why did my score change (``attribute_pairs``:
  the same for a few (old row, new row) dict pairs, without frames).
"""

from salesml.explain.change import attribute_change, attribute_pairs, score_change
from salesml.explain.drivers import Contributions, contributions, explain, to_json
from salesml.explain.stats import fit_explainer
from salesml.explain.views import compare_importance, global_drivers, importance

__all__ = [
    "Contributions",
    "attribute_change",
    "attribute_pairs",
    "compare_importance",
    "contributions",
    "explain",
    "fit_explainer",
    "global_drivers",
    "importance",
    "score_change",
    "to_json",
]
