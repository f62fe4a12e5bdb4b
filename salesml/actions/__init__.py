"""Recommended actions: a documented rule catalogue (``docs/actions.md``) and its engine."""

from salesml.actions.catalogue import RULES, Rule
from salesml.actions.engine import ActionError, recommend, what_if
from salesml.actions.stats import fit_action_stats

__all__ = ["RULES", "ActionError", "Rule", "fit_action_stats", "recommend", "what_if"]
