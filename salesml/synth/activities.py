"""Activities: a Poisson process per deal whose rate is the deal's latent engagement.

A deal with engagement rate ``r`` (activities per day) and life ``[created, closed]`` logs
``Poisson(r * cycle)`` activities. Their position ``s`` in the life (0 = created, 1 = closed)
has density ``0.6 + 0.8 s`` for deals that will be won (momentum builds towards signature) and
``2 (1 - s)`` for deals that will be lost (engagement fades out). Activities land on weekdays
(office hours come from the export clock); those after the export are cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salesml.synth import catalog
from salesml.synth.deals import Deals
from salesml.synth.timeline import FloatArray, IntArray, Timeline
from salesml.synth.world import choose


@dataclass(frozen=True)
class Activities:
    """Activities known at the export, sorted by time (activity ids follow that order)."""

    deal: IntArray
    time: FloatArray
    kind: IntArray
    eventual_per_deal: IntArray  # truth: all of a deal's activities, after the export too


def make_activities(rng: np.random.Generator, timeline: Timeline, deals: Deals) -> Activities:
    """Draw every deal's activities at once (no loop over deals or activities)."""
    cycle = deals.closed - deals.created
    count = rng.poisson(deals.engagement_rate * cycle)
    total = int(count.sum())
    deal = np.repeat(np.arange(deals.n, dtype=np.int32), count)
    u = rng.random(total)
    won = deals.won[deal]
    s = np.where(won, (np.sqrt(0.36 + 1.6 * u) - 0.6) / 0.8, 1.0 - np.sqrt(1.0 - u))
    del u, won
    created, closed = deals.created[deal], deals.closed[deal]
    t = created + s * (closed - created)
    del s
    day = timeline.next_weekday(np.floor(t).astype(np.int64))
    t = day + rng.random(total)
    del day
    t = np.clip(t, created, closed)
    del created, closed
    kind = choose(rng, catalog.ACTIVITY_TYPE_SHARE, total)
    known = np.flatnonzero(t < timeline.n_days)
    order = known[np.argsort(t[known], kind="stable")]
    return Activities(
        deal=deal[order].astype(np.int64),
        time=t[order],
        kind=kind[order],
        eventual_per_deal=np.asarray(count, dtype=np.int64),
    )
