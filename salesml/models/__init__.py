"""The models as they predict: one folder per model, each with its bundle (load/save/predict).

- ``contract``: the feature contract every bundle shares (features, kinds, vocabularies, the
  model matrix, bundle documents).
- ``win/``: the calibrated win-probability model (``WinBundle``).
- ``timing/``: the close-timing model (``TimingBundle``), a competing-risks distribution.
- ``revenue/``: the revenue forecast (periods, series, Prophet, pipeline, blend, reconciliation).
- ``calibration``: calibrators that map raw scores to probabilities.
- ``evaluation``: how good probabilities are (AUC, Brier, log loss, calibration error,
  reliability curves).
- ``registry``: where MLflow lives and loading registered bundles.

Fitting lives in ``training/`` (``training/win``, ``training/timing``, ``training/revenue``);
``salesml.scoring`` composes win + timing + drivers + actions into one score.
"""
