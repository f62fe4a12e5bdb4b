"""The planted ground truth: every coefficient that ties the synthetic history to its outcomes.

These constants are the single source of truth for the generator, for ``_truth/effects.json``
and for ``docs/synthetic.md``. Changing one changes the data, so tests that recover the effects
read them from here.
"""

from __future__ import annotations

import math
from typing import Any

from salesml.synth import catalog

EFFECTS_VERSION = 1

# --- win probability at creation: logit = intercept + sum of effects -----------------------
WIN_INTERCEPT = -1.4
ENGAGEMENT_COEF = 1.2  # per SD of the latent engagement (engagement_z ~ N(0, 1))
REP_SKILL_COEF = 0.9  # per SD of the rep's latent skill (rep_skill ~ N(0, 1))
PRICE_RATIO_COEF = -1.6  # per unit of log(amount at creation / product list price)
ACCOUNT_SIZE_COEF = -0.15  # per unit of log10(employees) - 2.5
LEAD_SOURCE_EFFECT: dict[str, float] = {
    "web": 0.0,
    "referral": 0.5,
    "partner": 0.3,
    "event": 0.1,
    "webinar": 0.0,
    "cold_outbound": -0.4,
    "paid_search": -0.2,
    catalog.EXISTING_CUSTOMER: 0.2,
}
UNTRACKED_SOURCE_EFFECT = 0.0  # deals with no lead source
COMPETITOR_EFFECT: dict[str, float] = {"none": 0.0, "BigCo": -0.6, "Upstart": -0.3}
DEAL_TYPE_EFFECT: dict[str, float] = {"new_business": 0.0, "expansion": 0.2, "renewal": 0.45}
PRODUCT_EFFECT: dict[str, float] = {
    "Essentials": 0.10,
    "Essentials Plus": 0.05,
    "Team": 0.0,
    "Business": 0.0,
    "Analytics Add-on": 0.10,
    "Platform Pro": -0.10,
    "Platform Enterprise": -0.15,
    "Data Cloud": -0.20,
}
NOISE_SCORE_COEF = 0.0  # the pure-noise attributes have exactly no effect
NOISE_LABEL_EFFECT: dict[str, float] = dict.fromkeys(catalog.NOISE_LABELS, 0.0)

# --- latent drivers -------------------------------------------------------------------------
ENGAGEMENT_BASE_RATE = 0.1  # activities per day at engagement_z = 0
ENGAGEMENT_SIGMA = 0.55  # engagement_rate = base * exp(sigma * engagement_z)
QUANTITY_SIGMA = 0.35  # quantity ~ LogNormal(0, sigma) (seats / volume relative to list)
DISCOUNT_BETA = (2.0, 8.0)  # discount ~ Beta(a, b), mean 20 %

# --- cycle length: days from created to closed ----------------------------------------------
# log(cycle) = log(CYCLE_BASE_MEDIAN) + PRICE * log(list_price / CYCLE_PRICE_REF)
#            + SIZE * (log10(employees) - 2.5) + AMOUNT * log(amount ratio)
#            + RENEWAL * [renewal] + log(LOST_EXIT_FACTOR[exit stage]) * [lost] + SIGMA * eps
CYCLE_BASE_MEDIAN_DAYS = 48.0
CYCLE_PRICE_REF = 12_000.0
CYCLE_PRICE_COEF = 0.25
CYCLE_SIZE_COEF = 0.30
CYCLE_AMOUNT_COEF = 0.10
CYCLE_RENEWAL_COEF = -0.30
CYCLE_LOST_EXIT_FACTOR: tuple[float, ...] = (0.4, 0.6, 0.8, 1.0)  # by exit stage of lost deals
CYCLE_SIGMA = 0.9
CYCLE_MIN_DAYS = 1.0 / 24.0
CYCLE_MAX_DAYS = 1500.0

# --- growth and seasonality -----------------------------------------------------------------
HISTORY_DAYS = 3 * 365
GROWTH_PER_YEAR = 0.25  # deal (and lead) creation rate rises 25 % a year
CREATION_MONTH_FACTOR: tuple[float, ...] = (
    0.95, 1.0, 1.05, 1.0, 1.0, 0.95, 0.8, 0.75, 1.05, 1.1, 1.05, 0.85,
)  # fmt: skip
CREATION_WEEKEND_FACTOR = 0.1
# A deal whose natural close falls in the first two months of a quarter slips, with this
# probability, to a uniform day of the quarter's last month (quarter-end push).
QUARTER_END_SLIP: dict[str, float] = {"won": 0.35, "lost": 0.15}
SUMMER_SLIP = 0.10  # extra slip probability for natural closes in July and August
DECEMBER_SLIP_WON = 0.60  # slip probability of won deals closing in October or November

# --- pipeline mechanics ---------------------------------------------------------------------
REGRESSION_SHARE = 0.12  # deals that go back one stage once (of those past Qualification)
AMOUNT_CHANGE_SHARE = 0.25  # deals whose amount changes once while open
AMOUNT_CHANGE_SIGMA = 0.15
CLOSE_GUESS_OPTIMISM = 0.75  # first expected close = optimism * typical cycle * noise
MAX_PUSHES = 4
MISSING_AMOUNT_SHARE: dict[str, float] = {"won": 0.0, "lost": 0.08, "open": 0.05}
DEPARTED_OWNER_SHARE = 0.005  # deals owned by reps who have left (not in reps)

# --- funnel, spend and NPS ------------------------------------------------------------------
LEAD_CONVERSION: dict[str, float] = {
    "web": 0.15,
    "referral": 0.45,
    "partner": 0.35,
    "event": 0.20,
    "webinar": 0.15,
    "cold_outbound": 0.08,
    "paid_search": 0.10,
}
COST_PER_LEAD: dict[str, float] = {
    "web": 150.0,
    "referral": 100.0,
    "partner": 600.0,
    "event": 900.0,
    "webinar": 300.0,
    "cold_outbound": 250.0,
    "paid_search": 350.0,
}
SPEND_NOISE_SIGMA = 0.15
# Web analytics (web_sessions): the channels a site tracks, and sessions per lead they bring
# (each of their leads is one key event: a form filled on the site).
SESSIONS_PER_LEAD: dict[str, float] = {"web": 80.0, "webinar": 30.0, "paid_search": 45.0}
LEAD_DISQUALIFIED_SHARE = 0.75  # of leads that never convert; the rest stay open
NPS_RESPONSE_SHARE = 0.35  # of won deals whose account answers a survey afterwards
NPS_MEAN_BY_PRODUCT: dict[str, float] = {
    "Essentials": 7.0,
    "Essentials Plus": 7.3,
    "Team": 7.6,
    "Business": 7.8,
    "Analytics Add-on": 8.2,
    "Platform Pro": 8.0,
    "Platform Enterprise": 8.4,
    "Data Cloud": 7.2,
}
NPS_SIGMA = 1.8


def sigmoid(x: float) -> float:
    """The logistic function."""
    return 1.0 / (1.0 + math.exp(-x))


def effects_document(logit_sd: dict[str, float], run: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable description of the planted effects (``_truth/effects.json``).

    Args:
        logit_sd: Measured standard deviation of each effect's contribution to the win logit
            over the generated deals (how much each effect moves the probability).
        run: Run parameters (seed, n_deals, end_date, …) recorded alongside.

    Returns:
        A JSON-serialisable dict.
    """
    strength_order = sorted(logit_sd, key=lambda k: -logit_sd[k])
    return {
        "version": EFFECTS_VERSION,
        "run": run,
        "win_probability": {
            "model": "P(won) = sigmoid(intercept + sum of effects), drawn once at creation",
            "intercept": WIN_INTERCEPT,
            "numeric": {
                "engagement": {
                    "variable": "engagement_z (truth); observable as activity rate/recency",
                    "coefficient": ENGAGEMENT_COEF,
                },
                "rep_skill": {
                    "variable": "rep_skill (truth); observable as the rep's trailing win rate",
                    "coefficient": REP_SKILL_COEF,
                },
                "price_ratio": {
                    "variable": "log(amount at creation / list_price)",
                    "coefficient": PRICE_RATIO_COEF,
                },
                "account_size": {
                    "variable": "log10(accounts.employees) - 2.5",
                    "coefficient": ACCOUNT_SIZE_COEF,
                },
                "noise_score": {"variable": "deals.noise_score", "coefficient": NOISE_SCORE_COEF},
            },
            "categorical": {
                "lead_source": {**LEAD_SOURCE_EFFECT, "<missing>": UNTRACKED_SOURCE_EFFECT},
                "competitor": COMPETITOR_EFFECT,
                "deal_type": DEAL_TYPE_EFFECT,
                "product": PRODUCT_EFFECT,
                "noise_label": NOISE_LABEL_EFFECT,
            },
            "logit_sd": logit_sd,
            "strength_order": strength_order,
            "zero_effect": ["noise_score", "noise_label"],
        },
        "engagement": {
            "engagement_rate_per_day": "base * exp(sigma * engagement_z)",
            "base": ENGAGEMENT_BASE_RATE,
            "sigma": ENGAGEMENT_SIGMA,
            "activity_time_density": {"won": "0.6 + 0.8 s", "lost": "2 (1 - s)"},
        },
        "cycle_days": {
            "model": "lognormal; log(days) = log(base_median) + terms + sigma * N(0, 1)",
            "base_median_days": CYCLE_BASE_MEDIAN_DAYS,
            "price_coef_per_log_list_price_over_ref": CYCLE_PRICE_COEF,
            "price_ref": CYCLE_PRICE_REF,
            "size_coef_per_log10_employees_minus_2_5": CYCLE_SIZE_COEF,
            "amount_ratio_coef_per_log": CYCLE_AMOUNT_COEF,
            "renewal_coef": CYCLE_RENEWAL_COEF,
            "lost_factor_by_exit_stage": dict(
                zip(catalog.STAGES, CYCLE_LOST_EXIT_FACTOR, strict=True)
            ),
            "sigma": CYCLE_SIGMA,
            "clip_days": [CYCLE_MIN_DAYS, CYCLE_MAX_DAYS],
            "then": "weekend closes move to Monday; seasonal slips (see seasonality)",
        },
        "seasonality": {
            "growth_per_year": GROWTH_PER_YEAR,
            "creation_month_factor": dict(zip(range(1, 13), CREATION_MONTH_FACTOR, strict=True)),
            "creation_weekend_factor": CREATION_WEEKEND_FACTOR,
            "quarter_end_slip": QUARTER_END_SLIP,
            "summer_slip_extra": SUMMER_SLIP,
            "december_slip_won": DECEMBER_SLIP_WON,
        },
        "pipeline": {
            "stages": list(catalog.STAGES),
            "lost_exit_stage_share": dict(
                zip(catalog.STAGES, catalog.LOST_EXIT_STAGE_SHARE, strict=True)
            ),
            "regression_share": REGRESSION_SHARE,
            "amount_change_share": AMOUNT_CHANGE_SHARE,
            "max_close_date_pushes": MAX_PUSHES,
            "missing_amount_share": MISSING_AMOUNT_SHARE,
            "departed_owner_share": DEPARTED_OWNER_SHARE,
        },
        "funnel": {
            "lead_conversion": LEAD_CONVERSION,
            "cost_per_lead": COST_PER_LEAD,
            "lead_disqualified_share": LEAD_DISQUALIFIED_SHARE,
        },
        "nps": {
            "model": "score = clip(round(N(mean_by_product, sigma)), 0, 10)",
            "mean_by_product": NPS_MEAN_BY_PRODUCT,
            "sigma": NPS_SIGMA,
            "response_share_of_won_deals": NPS_RESPONSE_SHARE,
        },
    }
