"""The one place the server touches the registry: which version an alias points at, loading
the models object ``score_features`` takes, and the versions ``GET /v1/models`` lists.

Swap ``load_models`` when ``score_features`` takes a richer models object; nothing else in the
server knows what is inside it (it reads ``.version`` only).
"""

from __future__ import annotations

import json
import math
from typing import Any

from salesml.models.evaluation import baselines_not_beaten
from salesml.models.registry import WIN_MODEL_NAME, configure
from salesml.scoring import load_scorer


def registry_version(alias: str) -> str:
    """The version ``alias`` points at now (raises when the registry cannot be reached)."""
    client = configure()
    return str(client.get_model_version_by_alias(WIN_MODEL_NAME, alias).version)


def load_models(alias: str) -> Any:
    """The models object for ``alias`` (today: ``salesml.models.registry.Scorer``)."""
    return load_scorer(alias)


def version_of(models: Any) -> str:
    return str(models.version)


def list_versions() -> list[dict[str, Any]]:
    """Every registered version of the win model, newest first, with metrics and card."""
    client = configure()
    aliases: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(WIN_MODEL_NAME).aliases or {}).items():
        aliases.setdefault(str(version), []).append(str(alias))
    out = []
    runs: dict[str, dict[str, float]] = {}
    for v in client.search_model_versions(f"name='{WIN_MODEL_NAME}'"):
        tags = dict(v.tags or {})
        try:
            holdout = json.loads(tags["holdout"]) if "holdout" in tags else None
        except ValueError:
            holdout = None
        out.append(
            {
                "version": str(v.version),
                "aliases": sorted(aliases.get(str(v.version), [])),
                "created_at": _ms_iso(v.creation_timestamp),
                "holdout": holdout,
                "promotion_reason": tags.get("promotion_reason"),
                "model_card": v.description or None,
                **against_baselines(_run_metrics(client, v.run_id, runs)),
            }
        )
    return sorted(
        out, key=lambda d: int(d["version"]) if d["version"].isdigit() else 0, reverse=True
    )


def _run_metrics(
    client: Any, run_id: str | None, seen: dict[str, dict[str, float]]
) -> dict[str, float]:
    """The metrics the training run logged (``holdout_*``, ``baseline_<name>_*``); {} when the
    run cannot be read."""
    if not run_id:
        return {}
    if run_id not in seen:
        try:
            seen[run_id] = dict(client.get_run(run_id).data.metrics)
        except Exception:  # a deleted run: the version is listed without the comparison
            seen[run_id] = {}
    return seen[run_id]


def against_baselines(metrics: dict[str, float]) -> dict[str, Any]:
    """The version against its baselines (fitted on the same training data and scored on the
    same holdout, training.win.baselines), by the rule the report and the model card use
    (``salesml.models.evaluation.baselines_not_beaten``): ``loses_to_baseline`` when one is
    not beaten, ``baseline`` the best of those (the lowest log loss), and every baseline's
    holdout log loss and Brier score. Nothing known: ``loses_to_baseline`` None."""
    baselines: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        for metric in ("log_loss", "brier"):
            if key.startswith("baseline_") and key.endswith(f"_{metric}"):
                name = key.removeprefix("baseline_").removesuffix(f"_{metric}")
                baselines.setdefault(name, {})[metric] = float(value)
    lost = baselines_not_beaten(metrics)
    if lost is None or not baselines:
        return {"loses_to_baseline": None, "baseline": None, "baselines": baselines or None}
    best = min(lost, key=lambda n: baselines[n].get("log_loss", math.inf), default=None)
    return {"loses_to_baseline": bool(lost), "baseline": best, "baselines": baselines}


def _ms_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


MODEL_NAME = WIN_MODEL_NAME
