"""The win-probability model as it predicts: the calibrated LightGBM bundle."""
