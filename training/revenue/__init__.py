"""Fitting the revenue forecast: rolling-origin backtests, blend weights, intervals, registry."""
