"""Fixed vocabularies of the synthetic world: regions, teams, products, channels, names.

Everything here is plain data (tuples and dicts); the planted coefficients that tie the data to
outcomes live in :mod:`salesml.synth.effects`.
"""

from __future__ import annotations


def _words(text: str, sep: str = " ") -> tuple[str, ...]:
    return tuple(text.split(sep))


REGIONS: tuple[str, ...] = ("NA", "EMEA", "APAC", "LATAM")
REGION_WEIGHTS: tuple[float, ...] = (0.45, 0.30, 0.15, 0.10)
COUNTRIES: dict[str, tuple[tuple[str, float], ...]] = {
    "NA": (("United States", 0.85), ("Canada", 0.15)),
    "EMEA": (
        ("Germany", 0.25),
        ("United Kingdom", 0.25),
        ("France", 0.18),
        ("Netherlands", 0.12),
        ("Sweden", 0.08),
        ("Spain", 0.12),
    ),
    "APAC": (("Japan", 0.3), ("Australia", 0.3), ("Singapore", 0.2), ("India", 0.2)),
    "LATAM": (("Brazil", 0.45), ("Mexico", 0.35), ("Argentina", 0.1), ("Chile", 0.1)),
}

# Teams double as customer segments: Enterprise reps sell to large accounts, SMB reps to small.
TEAMS: tuple[str, ...] = ("Enterprise", "Mid-Market", "SMB")
TEAM_REP_SHARE: tuple[float, ...] = (0.25, 0.35, 0.40)
TEAM_DEAL_LOAD: tuple[float, ...] = (0.5, 1.0, 1.6)  # relative deals per rep
TEAM_ACCOUNT_SHARE: tuple[float, ...] = (0.15, 0.30, 0.55)
TEAM_EMPLOYEES_MEDIAN: tuple[float, ...] = (8000.0, 600.0, 60.0)
EMPLOYEES_SIGMA = 0.9  # log-normal spread within a segment: a heavy-tailed mixture overall

INDUSTRIES: tuple[str, ...] = (
    "software",
    "retail",
    "manufacturing",
    "financial_services",
    "healthcare",
    "education",
    "logistics",
    "media",
    "energy",
    "public_sector",
)

# product, family, list price, share of deals by team (Enterprise, Mid-Market, SMB).
PRODUCTS: tuple[tuple[str, str, float, tuple[float, float, float]], ...] = (
    ("Essentials", "Core", 1_200.0, (0.00, 0.05, 0.35)),
    ("Essentials Plus", "Core", 4_800.0, (0.02, 0.15, 0.30)),
    ("Team", "Core", 12_000.0, (0.05, 0.25, 0.20)),
    ("Business", "Core", 24_000.0, (0.12, 0.25, 0.10)),
    ("Analytics Add-on", "Analytics", 9_000.0, (0.08, 0.12, 0.05)),
    ("Platform Pro", "Platform", 48_000.0, (0.25, 0.13, 0.00)),
    ("Platform Enterprise", "Platform", 120_000.0, (0.30, 0.05, 0.00)),
    ("Data Cloud", "Data", 250_000.0, (0.18, 0.00, 0.00)),
)

# Lead channels (leads.source, deals.lead_source, marketing_spend.channel).
CHANNELS: tuple[str, ...] = (
    "web",
    "referral",
    "partner",
    "event",
    "webinar",
    "cold_outbound",
    "paid_search",
)
# Expansion and renewal deals come from the installed base, not from a lead.
EXISTING_CUSTOMER = "existing_customer"
LEAD_SOURCES: tuple[str, ...] = (*CHANNELS, EXISTING_CUSTOMER)
# Channel mix of new-business deals, by team (rows follow TEAMS, columns follow CHANNELS).
CHANNEL_SHARE_BY_TEAM: tuple[tuple[float, ...], ...] = (
    (0.08, 0.15, 0.18, 0.20, 0.09, 0.25, 0.05),
    (0.18, 0.12, 0.12, 0.12, 0.16, 0.15, 0.15),
    (0.30, 0.10, 0.06, 0.05, 0.14, 0.08, 0.27),
)
UNTRACKED_SOURCE_SHARE = 0.03  # new-business deals with no lead source recorded (no lead)

DEAL_TYPES: tuple[str, ...] = ("new_business", "expansion", "renewal")
DEAL_TYPE_SHARE: tuple[float, ...] = (0.62, 0.25, 0.13)
DEAL_TYPE_NAME_SUFFIX: tuple[str, ...] = ("", " expansion", " renewal")

STAGES: tuple[str, ...] = ("Qualification", "Discovery", "Proposal", "Negotiation")
# Where lost deals leave the pipeline (index into STAGES): earlier stages are more likely.
LOST_EXIT_STAGE_SHARE: tuple[float, ...] = (0.35, 0.30, 0.22, 0.13)

STATUSES: tuple[str, ...] = ("open", "won", "lost")
CURRENCY = "USD"  # every synthetic deal is in USD

ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "demo")
ACTIVITY_TYPE_SHARE: tuple[float, ...] = (0.33, 0.42, 0.15, 0.10)

COMPETITORS: tuple[str, ...] = ("none", "BigCo", "Upstart")
COMPETITOR_SHARE: tuple[float, ...] = (0.5, 0.2, 0.3)
NOISE_LABELS: tuple[str, ...] = ("red", "green", "blue", "amber")

FIRST_NAMES: tuple[str, ...] = _words(
    "Dana Lee Sam Alex Jordan Taylor Morgan Casey Riley Avery Quinn Harper Rowan Sasha Noa Kai "
    "Mila Jonas Lena Mateo Sofia Hiro Yuki Priya Arjun Chloe Lucas Emma Omar Leila Diego Camila "
    "Felix Ingrid Pierre Amelie Tomas Aisha Ken Mei"
)
LAST_NAMES: tuple[str, ...] = _words(
    "Whitfield Park Nguyen Garcia Schmidt Rossi Tanaka Patel Kim Silva Dubois Jensen Kowalski "
    "Novak Haddad Okafor Murphy Larsen Moreau Fischer Costa Sato Reyes Walsh Bauer Ito Khan Lopez "
    "Berg Cohen Hughes Ortiz Meyer Singh Fontaine Alvarez Brooks"
)
COMPANY_WORDS: tuple[str, ...] = _words(
    "Northwind|Blue Harbor|Acme|Summit|Ironwood|Brightline|Cedar|Falcon|Granite|Harbor Point|"
    "Juniper|Keystone|Lakeside|Meridian|Nimbus|Oakridge|Pioneer|Quantum|Redwood|Silverline|"
    "Tidewater|Union|Vertex|Westfield|Zenith|Aurora|Beacon|Cobalt|Delta|Evergreen",
    "|",
)
COMPANY_KINDS: tuple[str, ...] = _words(
    "Traders Logistics Systems Health Foods Energy Media Capital Labs Works Retail Analytics "
    "Motors Textiles Pharma Telecom"
)
COMPANY_FORMS: tuple[str, ...] = ("Inc", "Ltd", "GmbH", "SA", "LLC", "Group", "Co")
