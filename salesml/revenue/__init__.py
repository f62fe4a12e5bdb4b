"""Revenue forecasts: the pipeline component, the blend and the forecast bundle."""
