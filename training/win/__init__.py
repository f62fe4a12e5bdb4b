"""Fitting the win model: features → LightGBM → calibrator, baselines, model card, registry."""
