"""Request and response models. Requests are strict (unknown fields are rejected); score rows
carry whatever columns ``salesml.scoring.score_features`` returns beyond the documented ones."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
)

# No C0/C1 controls, and no bidi controls (an id that displays as another): the importer's rule.
# Ids: 1 to 256 characters, the importer's and the events' ceiling (Limits.max_id_chars).
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=PRINTABLE)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=PRINTABLE)]
AttrName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
AttrValue = Annotated[str, StringConstraints(max_length=256)] | float | bool | None
# A number (true is not 1), within the importer's default ceiling (SALESML_IMPORT_MAX_AMOUNT).
Money = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False, strict=True)]
MIN_YEAR = 1900  # the importer's default (SALESML_IMPORT_MIN_YEAR)
PLAN_YEARS = 10  # an expected close date may lie this far ahead (as on import)


def _sane_date(value: date) -> date:
    """A date the importer would keep: from 1900 to ten years ahead."""
    day = value.date() if isinstance(value, datetime) else value
    latest = date.today() + timedelta(days=round(365.25 * PLAN_YEARS))
    if day.year < MIN_YEAR or day > latest:
        raise ValueError(f"must lie between {MIN_YEAR}-01-01 and {latest.isoformat()}")
    return value


def _not_before_1900(value: datetime) -> datetime:
    if value.year < MIN_YEAR:
        raise ValueError(f"must be in {MIN_YEAR} or later")
    return value


PlanDate = Annotated[date, AfterValidator(_sane_date)]
EventTime = Annotated[datetime, AfterValidator(_not_before_1900)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class DealOverrides(_Strict):
    """Fields to change on a known deal for a what-if. Stage, amount and expected close date
    take effect as a stage change at the scoring time; the others replace the deal's value."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"stage": "Negotiation", "amount": 42000.0}]},
    )

    stage: Text | None = None
    amount: Money | None = None
    expected_close_date: PlanDate | None = None
    currency: Currency | None = None
    owner_id: Id | None = None
    account_id: Id | None = None
    product: Text | None = None
    lead_source: Text | None = None
    deal_type: Text | None = None
    team: Text | None = None
    region: Text | None = None
    attributes: dict[AttrName, AttrValue] | None = Field(
        default=None, max_length=100, description="Custom attributes, by name without attr_."
    )


class NewDeal(_Strict):
    """A deal the warehouse has never seen, in the canonical shape (an open deal)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "deal_id": "CRM-123",
                    "created_at": "2026-03-02T09:30:00Z",
                    "amount": 24000.0,
                    "currency": "USD",
                    "owner_id": "R017",
                    "stage": "Discovery",
                    "expected_close_date": "2026-05-31",
                    "account_id": "A0312",
                    "product": "Platform Pro",
                    "lead_source": "webinar",
                    "deal_type": "new_business",
                    "team": "Enterprise",
                    "region": "EMEA",
                }
            ]
        },
    )

    deal_id: Id | None = Field(default=None, description="Your id, echoed in the response.")
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    created_at: EventTime = Field(description="When the deal was created; not in the future.")
    status: Literal["open"] = "open"
    amount: Money | None = None
    currency: Currency | None = None
    owner_id: Id | None = None
    stage: Text | None = None
    expected_close_date: PlanDate | None = None
    account_id: Id | None = None
    product: Text | None = None
    lead_source: Text | None = None
    deal_type: Text | None = None
    team: Text | None = None
    region: Text | None = None
    attributes: dict[AttrName, AttrValue] | None = Field(default=None, max_length=100)


class KnownDeal(_Strict):
    """A deal in the warehouse, optionally with fields changed (a what-if)."""

    deal_id: Id = Field(description="A deal in the warehouse.")
    overrides: DealOverrides | None = None


class NewDealItem(_Strict):
    """A deal the warehouse has never seen."""

    deal: NewDeal


def _item_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "new" if "deal" in value else "known"
    return "new" if isinstance(value, NewDealItem) else "known"


ITEM_TAGS = ("known", "new")
ScoreItem = Annotated[
    Annotated[KnownDeal, Tag("known")] | Annotated[NewDealItem, Tag("new")],
    Discriminator(_item_kind),
]


class ScoreRequest(_Strict):
    """Deals to score now (at most ``SALESML_API_MAX_BATCH``, default 100)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "deals": [
                        {"deal_id": "D0000042"},
                        {"deal_id": "D0000043", "overrides": {"stage": "Negotiation"}},
                        {
                            "deal": {
                                "deal_id": "CRM-123",
                                "created_at": "2026-03-02T09:30:00Z",
                                "owner_id": "R017",
                                "team": "Enterprise",
                                "amount": 24000.0,
                                "stage": "Discovery",
                            }
                        },
                    ]
                }
            ]
        },
    )

    deals: list[ScoreItem] = Field(min_length=1)


SCORE_ROW_EXAMPLE: dict[str, Any] = {
    "deal_id": "D0000042",
    "owner_id": "R017",
    "team": "Enterprise",
    "win_probability": 0.4213,
    "score": 42,
    "model_version": "3",
    "as_of": "2026-03-31T00:00:00",
}


class Driver(BaseModel):
    """One driver of a deal's score (docs/drivers.md)."""

    model_config = ConfigDict(extra="allow")

    concept: str = Field(description="The business concept (features grouped).")
    feature: str = Field(description="The concept's leading feature.")
    value: Any = Field(default=None, description="The deal's value of that feature.")
    contribution: float = Field(description="Probability points this concept adds.")
    text: str = Field(description="A sentence a rep can read.")


class ExpectedImpact(BaseModel):
    """What the action's what-if changes (docs/actions.md)."""

    model_config = ConfigDict(extra="allow")

    win_probability_points: float
    revenue: float | None = None
    basis: str


class Action(BaseModel):
    """One recommended action (docs/actions.md)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The catalogue rule.")
    kind: str
    concept: str | None = None
    action: str = Field(description="What to do.")
    reason: str = Field(description="Why.")
    expected_impact: ExpectedImpact | None = None
    changes: dict[str, Any] = Field(
        default_factory=dict, description="Feature -> value the what-if used."
    )


class ScoreRow(BaseModel):
    """One deal's score: win probability and score, its drivers and actions (arrays of objects),
    and close timing when the model has it; further columns ride along."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [SCORE_ROW_EXAMPLE]})

    deal_id: str
    owner_id: str | None = None
    team: str | None = None
    win_probability: float | None = None
    score: int | None = None
    model_version: str
    as_of: str | None = None
    drivers: list[Driver] | None = None
    actions: list[Action] | None = None
    drivers_base: float | None = Field(
        default=None, description="Probability points the drivers start from."
    )
    p_close_30d: float | None = None
    p_close_60d: float | None = None
    p_close_90d: float | None = None
    p_close_this_month: float | None = None
    p_close_this_quarter: float | None = None
    expected_close_date: str | None = None
    days_to_close_low: float | None = None
    days_to_close_high: float | None = None
    expected_revenue: float | None = Field(
        default=None,
        description="Win probability × the deal's amount, else its product's list price "
        "(as the KPI engine counts the open pipeline); null when the deal has neither.",
    )
    expected_revenue_basis: Literal["amount", "list_price"] | None = Field(
        default=None, description="What expected_revenue multiplies: amount or list_price."
    )
    score_basis: Literal["model", "base_rate", "beyond_observed_ages", "unseen_input"] | None = (
        Field(
            default=None,
            description="What the win probability rests on: the model's reading of the deal, "
            "the base rate (a constant model), beyond_observed_ages (the deal has been open "
            "longer than any training deal was when it closed: an extrapolation) or "
            "unseen_input (an input the model never saw in training, such as an unseen stage "
            "or no product where every training deal had one, read as typical); see "
            "score_warning.",
        )
    )
    score_warning: str | None = Field(
        default=None, description="Why the score is not supported by the data, in words."
    )

    @field_validator("drivers", "actions", mode="before")
    @classmethod
    def _decoded(cls, value: Any) -> Any:
        """Score runs and ``score_features`` hold these as JSON text."""
        if isinstance(value, str):
            return json.loads(value)
        if isinstance(value, float) and math.isnan(value):
            return None
        return value


class ScoreResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_version": "3",
                    "as_of": "2026-03-31T00:00:00",
                    "scores": [SCORE_ROW_EXAMPLE],
                }
            ]
        }
    )

    model_version: str
    as_of: str
    scores: list[ScoreRow]


class RunPoint(BaseModel):
    """The deal in one score run."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    as_of: str
    model_version: str
    win_probability: float | None = None
    score: int | None = None


class ChangeDriver(BaseModel):
    """A driver's share of a score change, in probability points."""

    driver: str = Field(description='A concept, "Model change" or "Other drivers".')
    change_points: float


class ScoreChange(BaseModel):
    """Why the score changed between the two latest runs that scored the deal."""

    previous_run_id: str
    current_run_id: str
    win_probability_change: float | None
    score_change: int | None
    model_changed: bool
    as_of_changed: bool
    summary: str
    drivers: list[ChangeDriver] | None = Field(
        default=None, description="Driver-level attribution (when available)."
    )


class DealResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "20260331T000000",
                    "score": SCORE_ROW_EXAMPLE,
                    "history": [
                        {
                            "run_id": "20260324T000000",
                            "as_of": "2026-03-24T00:00:00",
                            "model_version": "3",
                            "win_probability": 0.38,
                            "score": 38,
                        },
                        {
                            "run_id": "20260331T000000",
                            "as_of": "2026-03-31T00:00:00",
                            "model_version": "3",
                            "win_probability": 0.4213,
                            "score": 42,
                        },
                    ],
                    "change": {
                        "previous_run_id": "20260324T000000",
                        "current_run_id": "20260331T000000",
                        "win_probability_change": 0.0413,
                        "score_change": 4,
                        "model_changed": False,
                        "as_of_changed": True,
                        "summary": "win probability up 4.1 points (38% to 42%)",
                        "drivers": None,
                    },
                }
            ]
        }
    )

    run_id: str = Field(
        description="Where the score comes from: a score run's id, or event:<event_id> when "
        "a CRM event rescored the deal since (the same as history[-1].run_id)."
    )
    status: Literal["open", "won", "lost"] = Field(
        default="open",
        description="The deal's status as it stands (events included). A won or lost deal "
        "is not scored: its score has win_probability and score null, and note says why.",
    )
    closed_at: str | None = Field(default=None, description="When a won or lost deal closed.")
    note: str | None = Field(
        default=None, description='Why there is no score: "closed deals are not scored".'
    )
    score: ScoreRow
    history: list[RunPoint]
    change: ScoreChange | None


class ForecastRow(BaseModel):
    """One period (and group) of the forecast (docs/forecast.md)."""

    model_config = ConfigDict(extra="allow")


class ForecastResponse(BaseModel):
    freq: str
    horizon: int
    by: str | None
    rows: list[ForecastRow]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class LeadConversion(_Open):
    source: str
    leads: int
    converted: int
    customers: int
    lead_to_customer_rate: float | None = None


class FunnelStep(_Open):
    from_stage: str
    to_stage: str
    entered: int
    advanced: int
    conversion_rate: float | None = None


class KpiPeriod(_Open):
    period_start: str
    complete: bool
    closes_recorded: bool | None = Field(
        default=None,
        description="False before the first deal closed anywhere in the data: the period's "
        "closed-deal figures are null (unknown), not 0.",
    )
    revenue: float | None = None
    revenue_growth: float | None = None
    revenue_growth_yoy: float | None = None
    deals_won: int | None = None
    deals_lost: int | None = None
    win_rate: float | None = None
    average_order_value: float | None = None
    median_cycle_days: float | None = None
    new_customers: int | None = None
    marketing_spend: float | None = None
    cac: float | None = None
    nps: float | None = None


class KpiBlock(_Open):
    """The KPI figures of every deal or of one group (docs/kpis.md, BLOCK)."""

    group: str | None = Field(default=None, description="The group (in ``groups`` only).")
    label: str | None = None
    revenue: float | None = None
    revenue_growth: float | None = None
    revenue_growth_yoy: float | None = None
    deals_won: int | None = None
    deals_lost: int | None = None
    win_rate: float | None = None
    average_order_value: float | None = None
    median_cycle_days: float | None = None
    p75_cycle_days: float | None = None
    cac: float | None = None
    cac_by_channel: dict[str, float | None] | None = None
    nps: float | None = None
    nps_responses: int | None = None
    open_pipeline: float | None = None
    open_pipeline_deals: int | None = None
    open_pipeline_estimated: float | None = None
    pipeline_coverage: float | None = None
    lead_conversion: list[LeadConversion] | None = None
    funnel: list[FunnelStep] = Field(default_factory=list)
    periods: list[KpiPeriod] = Field(default_factory=list)


class KpiResponse(BaseModel):
    """The KPI document of docs/kpis.md (``overall`` and ``groups`` blocks)."""

    model_config = ConfigDict(extra="allow")

    as_of: str | None = None
    period: str
    by: str | None = None
    currency: str | None = None
    warnings: list[str] = Field(default_factory=list)
    overall: KpiBlock | None = None
    groups: list[KpiBlock] = Field(default_factory=list)


class RepDeal(ScoreRow):
    """One of the rep's open deals at most risk, as the latest score run holds it."""


class Coaching(BaseModel):
    """A recommended action on one of the rep's deals at risk."""

    deal_id: str
    action: Action


class RepResponse(BaseModel):
    owner_id: str
    team: str | None
    kpis: KpiBlock | None
    open_deals: int
    mean_win_probability: float | None
    at_risk: list[RepDeal]
    coaching: list[Coaching]


class ModelVersion(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str
    aliases: list[str]
    created_at: str | None = None
    holdout: dict[str, Any] | None = None
    promotion_reason: str | None = None
    model_card: str | None = None
    loses_to_baseline: bool | None = Field(
        default=None,
        description="The version's holdout log loss is above a baseline's (the base rate, the "
        "stage probability, …, fitted and scored on the same data); None when not logged.",
    )
    baseline: str | None = Field(
        default=None, description="The best baseline it loses to (lowest holdout log loss)."
    )
    baselines: dict[str, dict[str, float]] | None = Field(
        default=None, description="Each baseline's holdout log_loss and brier."
    )


class ModelsResponse(BaseModel):
    name: str
    serving_alias: str
    serving_version: str | None
    versions: list[ModelVersion]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    model_version: str | None
    run_id: str | None
    detail: str | None = None
