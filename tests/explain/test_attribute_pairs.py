"""``attribute_pairs`` (the live applier's few pairs, without frames) is ``attribute_change``
of the frames those pairs make."""

from __future__ import annotations

import json
import random
from typing import Any

import pandas as pd
import pytest

from salesml.explain import attribute_change, attribute_pairs

CONCEPTS = ["Engagement", "Deal size", "Stage", "Rep track record", "Timing"]


def _row(rng: random.Random, version: str, base: bool) -> dict[str, Any]:
    concepts = rng.sample(CONCEPTS, rng.randint(0, 4))
    drivers = [{"concept": c, "contribution": rng.uniform(-20, 20)} for c in concepts]
    return {
        "win_probability": rng.random(),
        "model_version": version,
        "drivers": json.dumps(drivers),
        "drivers_base": rng.uniform(10, 60) if base else None,
    }


def _frames(pairs: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """What ``attribute_change`` of the pairs' frames says (the reference)."""
    cols = ["win_probability", "model_version", "drivers", "drivers_base"]
    old = pd.DataFrame(
        [{"deal_id": d, **{c: p.get(c) for c in cols}} for d, (p, _) in pairs.items()]
    )
    new = pd.DataFrame(
        [{"deal_id": d, **{c: q.get(c) for c in cols}} for d, (_, q) in pairs.items()]
    )
    if old["drivers_base"].isna().any() or new["drivers_base"].isna().any():
        old, new = old.drop(columns="drivers_base"), new.drop(columns="drivers_base")
    old = old.dropna(subset=["win_probability"])
    new = new.dropna(subset=["win_probability"])
    table = attribute_change(old, new, top=None)
    return dict(zip(table["deal_id"], table["attribution"], strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("case", ["base", "some_base_missing", "no_probability", "one"])
def test_pairs_equal_attribute_change_of_their_frames(seed: int, case: str) -> None:
    rng = random.Random(seed)
    n = 1 if case == "one" else 6
    pairs = {}
    for i in range(n):
        changed = rng.random() < 0.4
        base = case != "some_base_missing" or i != n - 1
        pairs[f"d{i}"] = (_row(rng, "1", base), _row(rng, "2" if changed else "1", base))
    if case == "no_probability":
        pairs["d0"][1]["win_probability"] = None
        pairs["d1"][0]["win_probability"] = float("nan")
    got = attribute_pairs(pairs, top=None)
    want = _frames(pairs)
    assert got.keys() == want.keys()
    for deal, attribution in want.items():
        assert [a["driver"] for a in got[deal]] == [a["driver"] for a in attribution]
        assert [a["change_points"] for a in got[deal]] == pytest.approx(
            [a["change_points"] for a in attribution], abs=1e-12
        )


def test_model_change_reads_the_base_only_when_every_row_has_one() -> None:
    old = {"win_probability": 0.2, "model_version": "1", "drivers": "[]", "drivers_base": 20.0}
    new = {"win_probability": 0.5, "model_version": "2", "drivers": "[]", "drivers_base": 45.0}
    got = attribute_pairs({"a": (old, new)})["a"]
    assert got[0] == {"driver": "Model change", "change_points": pytest.approx(25.0)}
    assert got[1] == {"driver": "Other drivers", "change_points": pytest.approx(5.0)}
    without = attribute_pairs({"a": (old, {**new, "drivers_base": None})})["a"]
    assert without == [{"driver": "Model change", "change_points": pytest.approx(30.0)}]
