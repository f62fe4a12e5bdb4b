"""Point-in-time features: declared as data, computed as a pure function of (history, as_of).

Public API: :class:`features.history.History` and :func:`features.history.load_history`;
:class:`features.spec.Feature`, :func:`features.spec.feature_spec`,
:func:`features.spec.excluded_attributes`; :func:`features.build.build_features`,
:func:`features.build.build_snapshots`, :func:`features.build.weekly_as_of_dates`.
"""
