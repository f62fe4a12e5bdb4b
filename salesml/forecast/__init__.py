"""Time-series building blocks for revenue forecasts.

Periods, won revenue series, the Prophet component, metrics and reconciliation.

Pure pandas / numpy / Prophet: nothing here imports features, training or serving. See
docs/forecast-timeseries.md.
"""
