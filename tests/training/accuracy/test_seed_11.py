"""Issue 4's accuracy targets (targets.py) on seed 11 at 20,000 deals."""

from __future__ import annotations

import pytest

from tests.reference.accuracy import Study, documented_study
from tests.training.accuracy.targets import TARGETS


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return documented_study(tmp_path_factory, seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_model_meets_its_accuracy_targets(study: Study, target: str) -> None:
    TARGETS[target](study)
