"""Oracles the tests hold the product to, each written the slow, obvious way:

- ``snapshots``: every feature from its definition, one (deal, as_of) at a time;
- ``kpis``: the KPI JSON in plain pandas (also the peer ``make bench`` times the engine against);
- ``accuracy``: the models' accuracy measured against what the synthetic generator planted
  (also behind ``python -m benchmarks.accuracy`` and the tables of docs/forecast.md and
  docs/timing.md).
"""
