"""Synthetic CRM history with planted, documented ground truth (see docs/synthetic.md).

``generate(n_deals, seed, out_dir, end_date)`` writes the canonical tables plus ``_truth/``.
"""

from salesml.synth.generate import SynthSummary, generate

__all__ = ["SynthSummary", "generate"]
