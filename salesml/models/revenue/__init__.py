"""The revenue forecast as it predicts: periods, won-revenue series, the Prophet component,
the pipeline component, the blend and forecast bundle, reconciliation and accuracy metrics.

Nothing here imports features, training or serving. See docs/forecast.md and
docs/forecast-timeseries.md.
"""
