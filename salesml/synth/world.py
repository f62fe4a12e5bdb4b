"""The static world: reps (with latent skill and tenure), accounts and the product catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pyarrow as pa

from salesml.synth import catalog
from salesml.synth.arrow import categorical, join_strings, sequential_ids
from salesml.synth.timeline import BoolArray, FloatArray, IntArray, Timeline

INITIAL_REP_SHARE = 0.55  # reps already on board when the history starts
DEPARTED_REP_SHARE = 0.04  # extra reps who left during the history (not in reps)
ACCOUNT_SKEW = 1.6  # some accounts get many deals: position in cell ~ count * U ** skew


def n_reps_for(n_deals: int) -> int:
    """Active rep count for a history of ``n_deals`` deals."""
    return max(8, n_deals // 400)


def choose(rng: np.random.Generator, weights: tuple[float, ...], n: int) -> IntArray:
    """``n`` draws of an index with probabilities proportional to ``weights``."""
    p = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(p / p.sum())
    picked = np.searchsorted(cdf, rng.random(n), side="right")
    return np.asarray(np.minimum(picked, len(p) - 1), dtype=np.int64)


def choose_by_row(rng: np.random.Generator, table: FloatArray, row: IntArray) -> IntArray:
    """One draw per element from row ``row[i]`` of a matrix of (unnormalised) weights."""
    cdf = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(row))
    picked = (u[:, None] >= cdf[row]).sum(axis=1)
    return np.asarray(np.minimum(picked, table.shape[1] - 1), dtype=np.int64)


def spread_normal(rng: np.random.Generator, n: int) -> FloatArray:
    """``n`` evenly spread N(0, 1) quantiles in random order, rescaled to mean 0 and SD 1.

    A small roster then still spans weak to strong reps, so the base win rate and the
    rep-skill effect do not hinge on the luck of eight draws.
    """
    normal = NormalDist()
    x = np.asarray([normal.inv_cdf((i + 0.5) / n) for i in range(n)])  # n reps, not deals
    x = rng.permutation(x) - x.mean()
    return np.asarray(x / x.std() if n > 1 else x, dtype=np.float64)


def allocate(shares: tuple[float, ...], n: int) -> IntArray:
    """Split ``n`` items by ``shares`` (largest remainder), giving every share at least one."""
    p = np.asarray(shares) / sum(shares)
    counts = np.floor(p * n).astype(np.int64)
    for i in np.argsort(-(p * n - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    while n >= len(p) and (counts == 0).any():
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return np.repeat(np.arange(len(p)), counts)


@dataclass(frozen=True)
class Reps:
    """All reps, active and departed, numbered by hire date (R001 is the longest-serving)."""

    ids: pa.Array
    team: IntArray
    region: IntArray
    skill: FloatArray
    hired: FloatArray  # days since the history start; negative = before it
    departed: BoolArray
    first: IntArray
    last: IntArray
    manager: IntArray  # per (team, region) cell: index into FIRST_NAMES x LAST_NAMES pairs

    @property
    def n(self) -> int:
        """Number of reps, departed ones included."""
        return len(self.skill)


@dataclass(frozen=True)
class Accounts:
    """Customer accounts; ``members``/``cell_start`` index them by (segment, region) cell."""

    ids: pa.Array
    names: pa.Array
    segment: IntArray
    region: IntArray
    country: IntArray
    industry: IntArray
    employees: IntArray
    revenue: FloatArray
    members: IntArray
    cell_start: IntArray


COUNTRY_NAMES: tuple[str, ...] = tuple(c for r in catalog.REGIONS for c, _ in catalog.COUNTRIES[r])


def make_reps(rng: np.random.Generator, n_deals: int, timeline: Timeline) -> Reps:
    """Reps with team, region, latent skill and tenure; a few of them later leave."""
    n_active = n_reps_for(n_deals)
    n_departed = max(1, round(DEPARTED_REP_SHARE * n_active))
    n = n_active + n_departed
    team = np.concatenate(
        [rng.permutation(allocate(catalog.TEAM_REP_SHARE, n_active)),
         choose(rng, catalog.TEAM_REP_SHARE, n_departed)]
    )  # fmt: skip
    departed = np.arange(n) >= n_active
    initial = (rng.random(n) < INITIAL_REP_SHARE) | departed
    for k in range(len(catalog.TEAMS)):  # every team starts with at least one rep
        members = np.flatnonzero((team == k) & ~departed)
        if len(members):
            initial[members[0]] = True
    before = -365.0 * rng.gamma(1.5, 1.5, n)
    during = rng.uniform(0.0, max(timeline.n_days - 30.0, 1.0), n)
    hired = np.floor(np.where(initial, before, during))
    order = np.argsort(hired, kind="stable")  # ids follow hire dates: R001 joined first
    n_cells = len(catalog.TEAMS) * len(catalog.REGIONS)
    pairs = len(catalog.FIRST_NAMES) * len(catalog.LAST_NAMES)
    return Reps(
        ids=sequential_ids("R", n, 3),
        team=np.asarray(team[order], dtype=np.int64),
        region=choose(rng, catalog.REGION_WEIGHTS, n),
        skill=spread_normal(rng, n),
        hired=np.asarray(hired[order], dtype=np.float64),
        departed=np.asarray(departed[order], dtype=np.bool_),
        first=rng.integers(0, len(catalog.FIRST_NAMES), n),
        last=rng.integers(0, len(catalog.LAST_NAMES), n),
        manager=rng.choice(pairs, n_cells, replace=False).astype(np.int64),
    )


def reps_columns(reps: Reps, timeline: Timeline) -> dict[str, pa.Array]:
    """Canonical ``reps`` columns (departed reps are left out: they have left the CRM)."""
    keep = np.flatnonzero(~reps.departed)
    first = categorical(reps.first[keep], catalog.FIRST_NAMES)
    last = categorical(reps.last[keep], catalog.LAST_NAMES)
    cell = reps.team[keep] * len(catalog.REGIONS) + reps.region[keep]
    mgr = reps.manager[cell]
    n_last = len(catalog.LAST_NAMES)
    manager = join_strings(
        [
            categorical(mgr // n_last, catalog.FIRST_NAMES),
            categorical(mgr % n_last, catalog.LAST_NAMES),
        ],
        " ",
    )
    return {
        "owner_id": reps.ids.take(pa.array(keep)),
        "name": join_strings([first, last], " "),
        "team": categorical(reps.team[keep], catalog.TEAMS),
        "manager": manager,
        "region": categorical(reps.region[keep], catalog.REGIONS),
        "hired_at": timeline.dates(reps.hired[keep].astype(np.int64)),
        "is_placeholder": pa.array(np.zeros(len(keep), dtype=np.bool_)),
    }


def make_accounts(rng: np.random.Generator, n_deals: int) -> Accounts:
    """About one account per six deals, in segments matching the teams, heavy-tailed in size."""
    n = max(6, n_deals // 6)
    segment = choose(rng, catalog.TEAM_ACCOUNT_SHARE, n)
    region = choose(rng, catalog.REGION_WEIGHTS, n)
    country = np.zeros(n, dtype=np.int64)
    offset = 0
    for r, name in enumerate(catalog.REGIONS):  # four regions, not a loop over rows
        options = catalog.COUNTRIES[name]
        here = np.flatnonzero(region == r)
        country[here] = offset + choose(rng, tuple(w for _, w in options), len(here))
        offset += len(options)
    median = np.asarray(catalog.TEAM_EMPLOYEES_MEDIAN)[segment]
    employees = np.maximum(
        2, np.round(median * np.exp(catalog.EMPLOYEES_SIGMA * rng.standard_normal(n)))
    ).astype(np.int64)
    per_head = np.exp(np.log(180_000.0) + 0.5 * rng.standard_normal(n))
    revenue = np.round(employees * per_head, -3)
    names = join_strings(
        [
            categorical(rng.integers(0, len(catalog.COMPANY_WORDS), n), catalog.COMPANY_WORDS),
            categorical(rng.integers(0, len(catalog.COMPANY_KINDS), n), catalog.COMPANY_KINDS),
            categorical(rng.integers(0, len(catalog.COMPANY_FORMS), n), catalog.COMPANY_FORMS),
        ],
        " ",
    )
    cell = segment * len(catalog.REGIONS) + region
    n_cells = len(catalog.TEAMS) * len(catalog.REGIONS)
    return Accounts(
        ids=sequential_ids("A", n, 4),
        names=names,
        segment=segment,
        region=region,
        country=country,
        industry=rng.integers(0, len(catalog.INDUSTRIES), n),
        employees=employees,
        revenue=revenue,
        members=np.argsort(cell, kind="stable"),
        cell_start=np.searchsorted(np.sort(cell), np.arange(n_cells + 1)),
    )


def pick_accounts(
    rng: np.random.Generator, accounts: Accounts, team: IntArray, region: IntArray
) -> IntArray:
    """An account per deal from the owner's (segment, region) cell, else segment, else any."""
    n_regions = len(catalog.REGIONS)
    n_cells = len(catalog.TEAMS) * n_regions
    lo = accounts.cell_start[:-1].copy()
    hi = accounts.cell_start[1:].copy()
    for c in range(n_cells):  # twelve cells: fall back when a cell has no account
        if hi[c] == lo[c]:
            seg = c // n_regions
            lo[c] = accounts.cell_start[seg * n_regions]
            hi[c] = accounts.cell_start[(seg + 1) * n_regions]
            if hi[c] == lo[c]:
                lo[c], hi[c] = 0, len(accounts.members)
    cell = team * n_regions + region
    size = hi[cell] - lo[cell]
    pos = lo[cell] + np.minimum(
        (size * rng.random(len(cell)) ** ACCOUNT_SKEW).astype(np.int64), size - 1
    )
    return np.asarray(accounts.members[pos], dtype=np.int64)


def accounts_columns(accounts: Accounts) -> dict[str, pa.Array]:
    """Canonical ``accounts`` columns."""
    return {
        "account_id": accounts.ids,
        "name": accounts.names,
        "industry": categorical(accounts.industry, catalog.INDUSTRIES),
        "employees": pa.array(accounts.employees, type=pa.int64()),
        "annual_revenue": pa.array(accounts.revenue, type=pa.float64()),
        "country": categorical(accounts.country, COUNTRY_NAMES),
    }


def products_columns() -> dict[str, pa.Array]:
    """Canonical ``products`` columns (the fixed catalogue)."""
    return {
        "product": pa.array([p[0] for p in catalog.PRODUCTS], pa.string()),
        "family": pa.array([p[1] for p in catalog.PRODUCTS], pa.string()),
        "list_price": pa.array([p[2] for p in catalog.PRODUCTS], pa.float64()),
    }


def list_prices() -> FloatArray:
    """List price per product index."""
    return np.asarray([p[2] for p in catalog.PRODUCTS], dtype=np.float64)


def product_mix() -> FloatArray:
    """Product weights per team (rows follow TEAMS)."""
    return np.asarray([p[3] for p in catalog.PRODUCTS], dtype=np.float64).T.copy()


def pick_reps(
    rng: np.random.Generator, reps: Reps, t: FloatArray, pool_mask: BoolArray, weights: FloatArray
) -> IntArray:
    """A rep per event time ``t``, among ``pool_mask`` reps already hired at ``t``.

    Draws by ``weights`` and redraws the rows whose rep was not hired yet (a handful of
    vectorised rounds); rows still unresolved get the longest-serving rep of the pool.
    """
    pool = np.flatnonzero(pool_mask)
    cdf = np.cumsum(weights[pool])
    cdf /= cdf[-1]
    out = np.full(len(t), pool[np.argmin(reps.hired[pool])], dtype=np.int64)
    todo = np.arange(len(t))
    for _ in range(40):
        if not len(todo):
            break
        cand = pool[
            np.minimum(np.searchsorted(cdf, rng.random(len(todo)), side="right"), len(pool) - 1)
        ]
        ok = reps.hired[cand] <= t[todo]
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return out
