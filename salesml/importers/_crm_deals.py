"""A deals export written with column labels (Zoho CRM, Pipedrive, Monday.com), read through a
declared spec (private).

Each of those tools exports one row per deal with its own labels, date formats and status
values; the format modules declare them as a ``DealsSpec`` and a status rule, and this module
turns the rows into canonical deals (plus reps named after the owners). As everywhere, it only
renames and recodes: parsing, bounds, rejects and de-duplication are the pipeline's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from salesml.errors import MissingColumnsError
from salesml.importers import _recode as rc
from salesml.importers.base import SOURCE_ROW, AttributeKind, SourceTable, owner_reps
from salesml.importers.validate import ID_CONTROL, Limits
from salesml.schemas import ATTRIBUTE_PREFIX

# Roles a spec may fill (each with the labels that export uses for it):
# deal_id, name, stage, status, amount, currency, owner, owner_id, account, lead_source,
# deal_type, created, close (the one close date: actual when closed, planned when open),
# expected_close, won_time, lost_time, pipeline, account_id (the account's id, preferred over
# its name), team, region, product.
ROLES = (
    "deal_id",
    "name",
    "stage",
    "status",
    "amount",
    "currency",
    "owner",
    "owner_id",
    "account",
    "lead_source",
    "deal_type",
    "created",
    "close",
    "expected_close",
    "won_time",
    "lost_time",
    "pipeline",
    "account_id",
    "team",
    "region",
    "product",
)
# Roles every format reads from a column with the canonical name when its spec names no other
# (a board's own "Region" column is the region, not a custom attribute ``region``).
CANONICAL_ROLES = ("team", "region", "product")
StatusRule = Callable[[pa.Table, dict[str, str | None]], pa.ChunkedArray]


@dataclass(frozen=True)
class DealsSpec:
    """How one tool writes its deals export.

    Attributes:
        format: the ``--format`` name.
        product: the tool's name, for messages.
        fields: role → labels that tool uses for it (matched ignoring case and punctuation).
        required: role → how the message names it when missing.
        date_formats: strptime formats tried before ISO 8601, for every date column.
        leaky: labels of columns the tool computes from the outcome or from activity up to the
            export date: left out (as features they would leak what happened later).
        ignored: labels of system columns that are not features (who edited the record…).
        attribute_prefix: stripped from custom column labels (Pipedrive's ``Deal - ``).
        foreign_prefixes: label prefixes of related records' columns (Pipedrive's
            ``Organization - ``): left out, listed in a warning.
        missing_hint / date_hint / status_hint: how to fix a missing column, a bad date, a
            bad status, in that tool's words.
    """

    format: str
    product: str
    fields: dict[str, tuple[str, ...]]
    required: dict[str, str]
    date_formats: tuple[str, ...]
    leaky: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    attribute_prefix: str = ""
    foreign_prefixes: tuple[str, ...] = ()
    missing_hint: str = ""
    date_hint: str = ""
    status_hint: str = ""
    extra_hints: dict[str, str] = field(default_factory=dict)


def deals_file(path: Path, spec: DealsSpec, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` itself, or the one file with "deal" in its name in the folder ``path``."""
    hint = "pass the exported file, or a folder holding one file with 'deal' in its name"
    return rc.deals_file(path, spec.product, hint, suffixes)


def find_columns(data: pa.Table, spec: DealsSpec, file: Path) -> dict[str, str | None]:
    """Role → the export's column for it; raises ``MissingColumnsError`` for required ones."""
    cols = {
        role: rc.find_column(
            data, *spec.fields.get(role, ()), *((role,) if role in CANONICAL_ROLES else ())
        )
        for role in ROLES
    }
    missing = [label for role, label in spec.required.items() if cols[role] is None]
    if missing:
        names = [c for c in data.column_names if c != SOURCE_ROW]
        raise MissingColumnsError(str(file), missing, names, spec.missing_hint)
    return cols


def read_deals(
    data: pa.Table,
    cols: dict[str, str | None],
    status: pa.ChunkedArray,
    spec: DealsSpec,
    file: str,
    warnings: list[str],
) -> list[SourceTable]:
    """Deals (and reps named after the owners) from ``data``, whose ``status`` the format has
    read already (open / won / lost, anything else passed through to be rejected)."""
    closed = pc.fill_null(pc.is_in(status, pa.array(rc.CLOSED_STATUSES)), False)
    created = rc.text(data, cols["created"])
    close = rc.text(data, cols["close"])
    actual = rc.coalesce(
        rc.where(pc.equal(status, "won"), rc.text(data, cols["won_time"])),
        rc.where(pc.equal(status, "lost"), rc.text(data, cols["lost_time"])),
        close,
    )
    planned = rc.coalesce(rc.text(data, cols["expected_close"]), close)
    owner = rc.text(data, cols["owner_id"] or cols["owner"])
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "deal_id": rc.text(data, cols["deal_id"]),
        "name": rc.text(data, cols["name"]),
        "created_at": created,
        "status": status,
        "closed_at": rc.where(closed, rc.day_after_created(actual, created)),
        "expected_close_date": rc.where(pc.invert(closed), planned),
        "amount": rc.text(data, cols["amount"]),
        "currency": rc.text(data, cols["currency"]),
        "owner_id": first_name(owner),
        "stage": rc.text(data, cols["stage"]),
        # the account's id when the export has it (a stable key), else its name
        "account_id": rc.text(data, cols["account_id"] or cols["account"]),
        "lead_source": rc.text(data, cols["lead_source"]),
        "deal_type": rc.text(data, cols["deal_type"]),
    }
    for role in CANONICAL_ROLES:
        if cols[role] is not None:
            columns[role] = rc.text(data, cols[role])
    attributes = _attributes(data, cols, spec, file, warnings, columns)
    columns[SOURCE_ROW] = data.column(SOURCE_ROW)
    deals = pa.table(columns)
    warning = rc.outcome_only_warning(file, status, deals)
    if warning:
        warnings.append(warning)
    sources = [
        SourceTable(
            "deals",
            deals,
            file,
            date_formats={
                c: list(spec.date_formats)
                for c in ("created_at", "closed_at", "expected_close_date")
            },
            attributes=attributes,
            hints=_hints(spec, cols),
        )
    ]
    reps = _reps(data, cols, spec, file)
    if reps is not None:
        sources.append(reps)
    return sources


def first_name(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """The first of several comma-separated people (Monday's People column): the owner."""
    return rc.blank_to_null(pc.replace_substring_regex(values, r",.*$", ""))


def _attributes(
    data: pa.Table,
    cols: dict[str, str | None],
    spec: DealsSpec,
    file: str,
    warnings: list[str],
    columns: dict[str, pa.ChunkedArray | pa.Array],
) -> dict[str, AttributeKind | None]:
    """Unused columns → custom attributes (into ``columns``); leaky, system and related-record
    columns are left out, each group listed in a warning."""
    used = {c for c in cols.values() if c is not None} | {SOURCE_ROW}
    if cols["owner_id"] is not None and cols["owner"] is not None:
        used.add(cols["owner"])
    if cols["account_id"] is not None and cols["account"] is not None:
        used.add(cols["account"])  # the account's name: its id is the key
    leaky_keys = {rc.header_key(c) for c in spec.leaky}
    ignored_keys = {rc.header_key(c) for c in spec.ignored}
    foreign = tuple(rc.header_key(p) for p in spec.foreign_prefixes)
    rest = [c for c in data.column_names if c not in used]
    leaky = [c for c in rest if rc.header_key(c) in leaky_keys]
    system = [c for c in rest if rc.header_key(c) in ignored_keys]
    related = [c for c in rest if foreign and rc.header_key(c).startswith(foreign)]
    left_out = set(leaky) | set(system) | set(related)
    extras = [c for c in rest if c not in left_out]
    name = Path(file).name
    if leaky:
        warnings.append(
            f"{name}: not imported: {rc.shorten(leaky)} ({spec.product} computes them from the "
            "deal's outcome or its activity up to the export date; as features they would leak "
            "what happened later)"
        )
    if system:
        warnings.append(f"{name}: not imported: {rc.shorten(system)} (system fields)")
    if related:
        warnings.append(
            f"{name}: not imported: {rc.shorten(related)} (fields of related records; only "
            "the deal's own fields become custom attributes)"
        )
    attributes: dict[str, AttributeKind | None] = {}
    if cols["pipeline"] is not None:
        columns[ATTRIBUTE_PREFIX + "pipeline"] = rc.text(data, cols["pipeline"])
        attributes[ATTRIBUTE_PREFIX + "pipeline"] = "categorical"
    stripped = {
        c: c[len(spec.attribute_prefix) :]
        if spec.attribute_prefix and c.startswith(spec.attribute_prefix)
        else c
        for c in extras
    }
    names = rc.attribute_names(list(stripped.values()), reserved=("pipeline",))
    for column, label in stripped.items():
        columns[names[label]] = rc.text(data, column)
        attributes[names[label]] = None
    return attributes


def _hints(spec: DealsSpec, cols: dict[str, str | None]) -> dict[str, str]:
    def label(role: str) -> str:
        return f"{spec.product} {cols[role]!r}" if cols[role] else spec.product

    close = " or ".join(repr(c) for c in (cols["won_time"], cols["lost_time"], cols["close"]) if c)
    return {
        "_missing": spec.missing_hint,
        "deal_id": label("deal_id"),
        "created_at": f"{label('created')}; {spec.date_hint}",
        "closed_at": f"{spec.product} {close or 'close date'} of a closed deal; {spec.date_hint}",
        "expected_close_date": f"{spec.product} {cols['expected_close'] or cols['close']!r} of "
        f"an open deal; {spec.date_hint}",
        "amount": label("amount"),
        "currency": label("currency"),
        "status": spec.status_hint,
        **spec.extra_hints,
    }


def _reps(
    data: pa.Table, cols: dict[str, str | None], spec: DealsSpec, file: str
) -> SourceTable | None:
    """One rep per owner whose name the export gives (``owner_reps``: named after the first
    accepted line)."""
    name_col = cols["owner"]
    if name_col is None:
        return None
    ids = first_name(rc.text(data, cols["owner_id"] or name_col))
    names = first_name(rc.text(data, name_col))
    known = pc.and_(pc.is_valid(ids), pc.is_valid(names))
    # An owner that cannot be an id (control characters, too long) rejects its deal's line
    # on owner_id; a rep made from it would only repeat that reject (one bad line, one reject).
    usable = pc.and_(
        pc.invert(pc.match_substring_regex(ids, ID_CONTROL)),
        pc.less_equal(pc.utf8_length(ids), Limits.max_id_chars),
    )
    known = pc.and_(known, pc.fill_null(usable, False))
    if not pc.any(known).as_py():
        return None
    ids, names = pc.filter(ids, known), pc.filter(names, known)
    rows = pc.filter(data.column(SOURCE_ROW), known)
    return owner_reps(ids, names, rows, file, {"owner_id": f"{spec.product} {name_col!r}"})


def labelled_status(
    values: pa.ChunkedArray, won: tuple[str, ...], lost: tuple[str, ...]
) -> pa.ChunkedArray:
    """won / lost for the given labels (ignoring case and punctuation), open for any other
    filled label, null (rejected: no status) when empty."""
    key = pc.replace_substring_regex(pc.utf8_lower(values), r"[^0-9a-z]+", "")
    is_won = pc.is_in(key, pa.array([rc.header_key(v) for v in won]))
    is_lost = pc.is_in(key, pa.array([rc.header_key(v) for v in lost]))
    status = pc.if_else(
        is_won, pa.scalar("won"), pc.if_else(is_lost, pa.scalar("lost"), pa.scalar("open"))
    )
    return pc.if_else(pc.is_valid(values), status, pa.scalar(None, pa.string()))


def unusual_labels(
    values: pa.ChunkedArray, usual: tuple[str, ...], what: str, file: str
) -> str | None:
    """A warning naming the labels outside the tool's defaults (read as open stages)."""
    known = {rc.header_key(v) for v in usual}
    labels = sorted(
        str(v) for v in pc.unique(pc.drop_null(values)).to_pylist() if rc.header_key(v) not in known
    )
    if not labels:
        return None
    return (
        f"{Path(file).name}: {what} {rc.shorten([repr(v) for v in labels])} are not among the "
        "defaults; deals with them are read as open (custom stages). If one of them means won "
        "or lost, rename it in the export"
    )
