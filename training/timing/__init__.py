"""Fitting the close-timing model: hazards, conformal intervals, holdout figures."""
