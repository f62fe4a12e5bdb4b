"""The win-probability model as it predicts: the bundle, its MLflow pyfunc and its metrics."""
