"""Any CSV/Parquet export plus a YAML mapping that says which column is which canonical field.

The mapping (documented in ``docs/mapping.md``) is validated with pydantic before anything is
read; a bad mapping raises ``MappingError`` naming the YAML key and what is allowed. Per
canonical table it names the file (a name or a glob), and per canonical field where the value
comes from: a source column (or several, first filled wins), a constant, a value map or a list
of cases over other columns. Date formats, decimal commas, custom attributes and wide "date
entered <stage>" columns are declared there too.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from salesml.errors import ImportFailedError, MappingError, MissingColumnsError, WrongFileError
from salesml.importers import _recode as rc
from salesml.importers.base import (
    SOURCE_ROW,
    AttributeKind,
    ImportBatch,
    SourceTable,
    read_tabular,
    with_source_rows,
)
from salesml.schemas import ATTRIBUTE_PREFIX, TABLES, TableSchema

Scalar = str | int | float | bool


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans (``Yes``, ``No``, ``On`` stay text, so a
    value map ``{Yes: won}`` means what it says) and dates stay text."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":timestamp"))]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _text(value: Any) -> Any:
    """YAML scalars → text (``true`` → "true", ``1`` → "1"); other values unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _matches(value: Any) -> Any:
    """A value to match: a scalar or list → list of text; ``true`` / ``false`` match every
    spelling of a boolean (true, t, 1, yes, y)."""
    values = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for v in values:
        if isinstance(v, bool):
            out += list(rc.TRUE_VALUES if v else rc.FALSE_VALUES)
        else:
            out.append(_text(v))
    return out


def _formats(data: dict[str, Any]) -> dict[str, Any]:
    """Accept ``date_formats`` for ``date_format`` and a single format for a list."""
    data = dict(data)
    if "date_formats" in data:
        if "date_format" in data:
            raise ValueError("give date_format or date_formats, not both (they mean the same)")
        data["date_format"] = data.pop("date_formats")
    if isinstance(data.get("date_format"), str):
        data["date_format"] = [data["date_format"]]
    return data


def _check_keys(data: Any, model: type[BaseModel], extra: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        return
    if "date_format" in model.model_fields:
        extra = (*extra, "date_formats")
    allowed = [*model.model_fields, *extra]
    for key in data:
        if key not in allowed:
            raise ValueError(f"unknown key {key!r}; allowed keys: {', '.join(allowed)}")


class Case(BaseModel):
    """``{when: {column: value or [values]}, then: value}``: all conditions must hold."""

    model_config = ConfigDict(extra="forbid")
    when: dict[str, list[str]] = Field(min_length=1)
    then: str

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        _check_keys(data, cls)
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("when"), dict):
                data["when"] = {str(k): _matches(v) for k, v in data["when"].items()}
            data["then"] = _text(data.get("then"))
        return data


class FieldSpec(BaseModel):
    """Where one canonical field comes from. A bare string is shorthand for ``{column: …}``."""

    model_config = ConfigDict(extra="forbid")
    column: list[str] | None = None
    value: str | None = None
    map: dict[str, str] | None = None
    cases: list[Case] | None = None
    default: str | None = None
    date_format: list[str] | None = None
    decimal: Literal[".", ","] | None = None
    for_status: list[Literal["open", "won", "lost"]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"column": [data]}
        if data is None:
            raise ValueError("empty; give a column name, {column: …}, {value: …} or {cases: …}")
        _check_keys(data, cls, ("from",))
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "from" in data and "column" in data:
            raise ValueError("give column or from, not both (they mean the same)")
        if "from" in data:
            data["column"] = data.pop("from")
        data = _formats(data)
        for key in ("column", "for_status"):
            if isinstance(data.get(key), str):
                data[key] = [data[key]]
        for key in ("value", "default"):
            if key in data:
                data[key] = _text(data[key])
        if isinstance(data.get("map"), dict):
            mapping: dict[str, Any] = {}
            for k, v in data["map"].items():
                for spelling in _matches(k):
                    mapping[spelling] = _text(v)
            data["map"] = mapping
        return data

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        sources = [k for k in ("column", "value", "cases") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError(
                "give exactly one of column (or from), value or cases"
                + (f"; got {', '.join(sources)}" if sources else "")
            )
        if self.map is not None and self.column is None:
            raise ValueError("map needs a column to read the values from")
        if self.default is not None and self.map is None and self.cases is None:
            raise ValueError("default only applies with map or cases")
        return self

    def source_columns(self) -> list[str]:
        """Every source column this field reads."""
        cols = list(self.column or [])
        for case in self.cases or []:
            cols += list(case.when)
        return cols

    def describe(self) -> str:
        """How the value is made, for reject reasons."""
        if self.value is not None:
            return f"constant {self.value!r}"
        if self.cases is not None:
            return "cases over " + ", ".join(repr(c) for c in dict.fromkeys(self.source_columns()))
        assert self.column is not None
        return ("column " if len(self.column) == 1 else "columns ") + ", ".join(
            repr(c) for c in self.column
        )


class AttributeSpec(BaseModel):
    """A source column kept as a custom attribute: its kind and (optionally) its name."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["categorical", "numeric"] | None = None
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if data is None or isinstance(data, str):
            return {"kind": data}
        _check_keys(data, cls)
        return data


class WideStages(BaseModel):
    """Stage history from one column per stage holding the date the deal entered it."""

    model_config = ConfigDict(extra="forbid")
    deal_id: str
    columns: dict[str, str] = Field(default_factory=dict)
    pattern: str | None = None
    date_format: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        _check_keys(data, cls)
        return _formats(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _has_stages(self) -> WideStages:
        if not self.columns and self.pattern is None:
            raise ValueError("give columns (column: stage) or a pattern such as '^Entered (.+)$'")
        if self.pattern is not None:
            try:
                groups = re.compile(self.pattern).groups
            except re.error as exc:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a regular expression: {exc}"
                ) from None
            if groups != 1:
                raise ValueError(f"pattern needs exactly one (group) for the stage; has {groups}")
        return self


class LeadLink(BaseModel):
    """Leads joined to the deals they became through a column both files carry (a funnel
    exported as two files: leads, and the deals that name the lead they came from)."""

    model_config = ConfigDict(extra="forbid")
    by: str  # the leads file's column
    deals_column: str | None = None  # the deals file's column with the same values (default: by)
    converted_at: str | None = None  # the deals file's column dating the conversion

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        _check_keys(data, cls)
        return {"by": data} if isinstance(data, str) else data


class TableSpec(BaseModel):
    """One canonical table: which file, and which column is which field."""

    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    columns: dict[str, FieldSpec] = Field(default_factory=dict)
    attributes: dict[str, AttributeSpec] = Field(default_factory=dict)
    keep_unmapped: bool = False
    wide: WideStages | None = None
    link: LeadLink | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        _check_keys(data, cls)
        if isinstance(data, dict) and data.get("attributes") is None:
            data = {k: v for k, v in data.items() if k != "attributes"}
        return data


class MappingSpec(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    date_format: list[str] = Field(default_factory=list)
    decimal: Literal[".", ","] = "."
    tables: dict[str, TableSpec]

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        _check_keys(data, cls)
        return _formats(data) if isinstance(data, dict) else data


def load_mapping(mapping_path: Path) -> MappingSpec:
    """Read and validate a mapping file; ``MappingError`` names every problem and its key."""
    name = mapping_path.name
    if not mapping_path.is_file():
        raise MappingError(f"mapping file {mapping_path} does not exist; check the --mapping path")
    try:
        raw = yaml.load(mapping_path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise MappingError(f"{name} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MappingError(f"{name} is not UTF-8 text; re-save it as UTF-8") from exc
    if not isinstance(raw, dict):
        raise MappingError(
            f"{name} must be a YAML mapping with a 'tables' key (see docs/mapping.md)"
        )
    try:
        spec = MappingSpec.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(f"{name}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    problems = _semantic_problems(spec)
    if problems:
        raise MappingError(f"{name}: " + "; ".join(problems))
    return spec


def _describe(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        msg = "required key is missing"
    return f"{loc}: {msg}" if loc else msg


def _semantic_problems(spec: MappingSpec) -> list[str]:
    problems: list[str] = []
    if not spec.tables:
        problems.append("tables: names no table; map at least deals (see docs/mapping.md)")
    linked = [name for name, t in spec.tables.items() if t.link is not None]
    if linked and "deals" not in spec.tables:
        problems.append(f"tables.{linked[0]}.link: needs the deals mapped in the same file")
    for table_name, tspec in spec.tables.items():
        where = f"tables.{table_name}"
        if table_name not in TABLES:
            problems.append(
                f"{where}: {table_name!r} is not a canonical table; use one of {', '.join(TABLES)}"
            )
            continue
        schema = TABLES[table_name]
        problems += _table_problems(where, schema, tspec)
    return problems


def _table_problems(where: str, schema: TableSchema, tspec: TableSpec) -> list[str]:
    problems: list[str] = []
    valid = ", ".join(schema.column_names)
    for field, fspec in tspec.columns.items():
        at = f"{where}.columns.{field}"
        if field not in schema.column_names:
            problems.append(f"{at}: {field!r} is not a field of {schema.name}; valid: {valid}")
            continue
        col = schema.column(field)
        if col.choices is not None:
            outputs = [fspec.value, fspec.default, *(fspec.map or {}).values()]
            outputs += [c.then for c in fspec.cases or []]
            for out in outputs:
                if out is not None and out not in col.choices:
                    problems.append(
                        f"{at}: {out!r} is not a valid {field}; use {', '.join(col.choices)}"
                    )
        if fspec.date_format is not None and col.kind not in ("date", "timestamp"):
            problems.append(f"{at}.date_format: {field} is not a date")
        if fspec.decimal is not None and col.kind not in ("float", "int"):
            problems.append(f"{at}.decimal: {field} is not a number")
        if fspec.for_status is not None and (
            schema.name != "deals" or "status" not in tspec.columns
        ):
            problems.append(f"{at}.for_status: only for deals, with status mapped")
    if tspec.wide is not None:
        if schema.name != "stage_history":
            problems.append(f"{where}.wide: only stage_history can be read from wide columns")
        elif tspec.columns:
            problems.append(f"{where}: give either columns or wide, not both")
    else:
        missing = [c for c in schema.required_columns if c not in tspec.columns]
        if missing:
            problems.append(
                f"{where}.columns: missing required field(s) {', '.join(missing)}; map each to "
                "a column, or give a constant such as status: {value: won}"
            )
    if tspec.link is not None:
        if schema.name != "leads":
            problems.append(f"{where}.link: only leads are linked to deals")
        for field in ("deal_id", "converted_at"):
            if field in tspec.columns and (field == "deal_id" or tspec.link.converted_at):
                problems.append(f"{where}: {field} comes from link; do not map it under columns")
    if (tspec.attributes or tspec.keep_unmapped) and not schema.allows_attributes:
        problems.append(f"{where}: attributes and keep_unmapped are only kept on deals")
    return problems


def read_mapped(path: Path, mapping_path: Path) -> ImportBatch:
    """Read ``path`` (a file or a folder) as the mapping file at ``mapping_path`` describes."""
    spec = load_mapping(mapping_path)
    if not path.exists():
        raise ImportFailedError(f"{path} does not exist; check the path")
    reader = _Reader(path, mapping_path.name, spec)
    sources: list[SourceTable] = []
    warnings: list[str] = []
    for table_name, tspec in spec.tables.items():
        for file in reader.files(table_name, tspec.file):
            sources += reader.table(table_name, tspec, file, warnings)
    return ImportBatch("mapping", str(path), sources, warnings)


def _lookup(keys: pa.ChunkedArray, found_keys: pa.Array, values: pa.Array) -> pa.ChunkedArray:
    """For each of ``keys``: the value at the position of the same key in ``found_keys``."""
    position = pc.index_in(keys, value_set=found_keys)
    return pc.take(values, position)


class _Reader:
    """Reads each source file once and builds the canonical tables from it."""

    def __init__(self, path: Path, mapping_name: str, spec: MappingSpec) -> None:
        self.path = path
        self.folder = path if path.is_dir() else path.parent
        self.mapping_name = mapping_name
        self.spec = spec
        self._cache: dict[Path, pa.Table] = {}
        self.referenced = {c for t in spec.tables.values() for c in _referenced(t)}
        # Wide stage columns are never kept as attributes: "entered Closed Won" is the outcome.
        self.wide_patterns = [
            re.compile(t.wide.pattern)
            for t in spec.tables.values()
            if t.wide is not None and t.wide.pattern is not None
        ]

    def files(self, table: str, pattern: str | None) -> list[Path]:
        """The files a table's ``file`` names (``None``: the one file given as PATH)."""
        if pattern is None:
            if self.path.is_file():
                return [self.path]
            files = rc.tabular_files(self.folder)
            if len(files) == 1:
                return files
            raise MappingError(
                f"{self.mapping_name}: tables.{table}.file is needed: {self.folder} holds "
                f"{len(files)} CSV/Parquet files ({rc.shorten([f.name for f in files])})"
            )
        if self.path.is_file():
            if fnmatch.fnmatch(self.path.name.lower(), pattern.lower()):
                return [self.path]
            raise MappingError(
                f"{self.mapping_name}: tables.{table}.file is {pattern!r}, but the path given "
                f"is the single file {self.path.name!r}; import the folder "
                f"({self.folder}) to read files by name, or change or remove tables.{table}.file"
            )
        if "/" in pattern:
            hits = sorted(p for p in self.folder.glob(pattern) if p.is_file())
        else:
            hits = [
                p
                for p in sorted(self.folder.iterdir())
                if p.is_file() and fnmatch.fnmatch(p.name.lower(), pattern.lower())
            ]
        if not hits:
            present = rc.shorten([p.name for p in rc.tabular_files(self.folder)])
            raise WrongFileError(
                str(self.folder),
                f"an export with a file matching {pattern!r} (tables.{table}.file in "
                f"{self.mapping_name})",
                f"found: {present or 'no CSV/Parquet files'}",
            )
        return hits

    def read(self, file: Path) -> pa.Table:
        if file not in self._cache:
            self._cache[file] = with_source_rows(read_tabular(file))
        return self._cache[file]

    def table(
        self, table: str, tspec: TableSpec, file: Path, warnings: list[str]
    ) -> list[SourceTable]:
        data = self.read(file)
        resolve = self._resolver(table, tspec, data, file)
        where = f"tables.{table}"
        if tspec.wide is not None:
            return self._wide(where, tspec.wide, data, file, resolve)
        columns: dict[str, pa.ChunkedArray] = {}
        hints = {"_missing": f"map it under {where}.columns in {self.mapping_name}"}
        date_formats: dict[str, list[str]] = {}
        schema = TABLES[table]
        for field, fspec in tspec.columns.items():
            columns[field] = self._field(schema, field, fspec, data, resolve)
            hints[field] = (
                f"from {fspec.describe()} via {where}.columns.{field} in {self.mapping_name}"
            )
            formats = fspec.date_format or self.spec.date_format
            kind = schema.column(field).kind
            if formats and kind in ("date", "timestamp"):
                date_formats[field] = list(formats)
            if kind in ("date", "timestamp"):
                hints[field] += "; declare its date_format there for another layout"
        for field, fspec in tspec.columns.items():
            if fspec.for_status is not None:
                keep = pc.is_in(columns["status"], pa.array(fspec.for_status))
                columns[field] = rc.where(
                    keep, rc.blank_to_null(pc.cast(columns[field], pa.string()))
                )
        if tspec.link is not None:
            self._link(tspec.link, data, resolve, columns, hints, date_formats)
        attributes = self._attributes(tspec, data, resolve, columns)
        columns[SOURCE_ROW] = data.column(SOURCE_ROW)
        out = pa.table(columns)
        if table == "deals" and "status" in columns:
            warning = rc.outcome_only_warning(str(file), columns["status"], out)
            if warning:
                warnings.append(warning)
        # Text numbers declared with a decimal comma are read so by the validator, which
        # rejects a value not written that way (1234.5) instead of misreading it.
        comma = frozenset(
            field
            for field, fspec in tspec.columns.items()
            if schema.column(field).kind in ("float", "int")
            and (fspec.decimal or self.spec.decimal) == ","
            and pa.types.is_string(out.column(field).type)
        )
        return [
            SourceTable(table, out, str(file), date_formats, attributes, hints, decimal_comma=comma)
        ]

    def _link(
        self,
        link: LeadLink,
        data: pa.Table,
        resolve: dict[str, str],
        columns: dict[str, pa.ChunkedArray],
        hints: dict[str, str],
        date_formats: dict[str, list[str]],
    ) -> None:
        """``deal_id`` (and ``converted_at``) of each lead: from the deal whose
        ``link.deals_column`` holds the lead's ``link.by`` value; null for a lead that never
        became a deal."""
        dspec = self.spec.tables["deals"]
        deal_keys: list[pa.Array] = []
        deal_ids: list[pa.Array] = []
        converted: list[pa.Array] = []
        on = link.deals_column or link.by
        for file in self.files("deals", dspec.file):
            deals = self.read(file)
            found = self._resolve_extra(
                file, deals, [on, *([link.converted_at] if link.converted_at else [])]
            )
            dresolve = self._resolver("deals", dspec, deals, file)
            ids = self._field(TABLES["deals"], "deal_id", dspec.columns["deal_id"], deals, dresolve)
            deal_keys.append(rc.text(deals, found[on]).combine_chunks())
            deal_ids.append(pc.cast(ids, pa.string()).combine_chunks())
            when = (
                rc.text(deals, found[link.converted_at])
                if link.converted_at
                else pc.cast(
                    self._field(
                        TABLES["deals"], "created_at", dspec.columns["created_at"], deals, dresolve
                    ),
                    pa.string(),
                )
            )
            converted.append(when.combine_chunks())
        keys = pa.concat_arrays(deal_keys)
        lead_keys = rc.text(data, resolve[link.by])
        columns["deal_id"] = _lookup(lead_keys, keys, pa.concat_arrays(deal_ids))
        hints["deal_id"] = f"the deal whose {on!r} is the lead's {link.by!r} (link)"
        if "converted_at" not in columns:
            columns["converted_at"] = _lookup(lead_keys, keys, pa.concat_arrays(converted))
            hints["converted_at"] = f"the linked deal's {link.converted_at or 'created_at'}"
            own = None if link.converted_at else dspec.columns["created_at"].date_format
            formats = own or self.spec.date_format
            if formats:
                date_formats["converted_at"] = list(formats)

    def _resolve_extra(self, file: Path, data: pa.Table, names: list[str]) -> dict[str, str]:
        """Columns a link names in another table's file (exact, else ignoring case)."""
        by_key = {c.strip().lower(): c for c in data.column_names}
        out: dict[str, str] = {}
        for name in names:
            found = name if name in data.column_names else by_key.get(name.strip().lower())
            if found is None:
                raise MissingColumnsError(
                    str(file),
                    [name],
                    [c for c in data.column_names if c != SOURCE_ROW],
                    f"tables.leads.link in {self.mapping_name} names it; fix the mapping",
                )
            out[name] = found
        return out

    def _resolver(self, table: str, tspec: TableSpec, data: pa.Table, file: Path) -> dict[str, str]:
        """Mapping's column names → the file's (exact, else ignoring case and outer spaces)."""
        by_key: dict[str, list[str]] = {}
        for c in data.column_names:
            by_key.setdefault(c.strip().lower(), []).append(c)
        resolved: dict[str, str] = {}
        missing: list[str] = []
        for name in _referenced(tspec):
            if name in data.column_names:
                resolved[name] = name
            elif len(by_key.get(name.strip().lower(), [])) == 1:
                resolved[name] = by_key[name.strip().lower()][0]
            else:
                missing.append(name)
        if missing:
            raise MissingColumnsError(
                str(file),
                list(dict.fromkeys(missing)),
                [c for c in data.column_names if c != SOURCE_ROW],
                f"tables.{table} in {self.mapping_name} names them; fix the mapping or the export",
            )
        return resolved

    def _field(
        self,
        schema: TableSchema,
        field: str,
        fspec: FieldSpec,
        data: pa.Table,
        resolve: dict[str, str],
    ) -> pa.ChunkedArray:
        n = data.num_rows
        if fspec.value is not None:
            return pa.chunked_array([rc.constant(n, fspec.value)])
        if fspec.cases is not None:
            return _cases(fspec, data, resolve)
        assert fspec.column is not None
        cols = [resolve[c] for c in fspec.column]
        plain = len(cols) == 1 and fspec.map is None
        if plain and not pa.types.is_string(data.column(cols[0]).type):
            return data.column(cols[0])  # typed Parquet columns stay typed
        values = rc.coalesce(*(rc.text(data, c) for c in cols))
        if fspec.map is not None:
            values = rc.recode(values, fspec.map, fspec.default)
        return values

    def _attributes(
        self,
        tspec: TableSpec,
        data: pa.Table,
        resolve: dict[str, str],
        columns: dict[str, pa.ChunkedArray],
    ) -> dict[str, AttributeKind | None]:
        wanted: dict[str, AttributeSpec] = {resolve[c]: a for c, a in tspec.attributes.items()}
        if tspec.keep_unmapped:
            taken = {resolve.get(c, c) for c in self.referenced}
            for c in data.column_names:
                wide = any(rx.search(c) for rx in self.wide_patterns)
                if c != SOURCE_ROW and c not in taken and c not in wanted and not wide:
                    wanted[c] = AttributeSpec()
        names = rc.attribute_names(list(wanted), strip="__c")
        out: dict[str, AttributeKind | None] = {}
        for column, aspec in wanted.items():
            attr = ATTRIBUTE_PREFIX + aspec.name if aspec.name else names[column]
            columns[attr] = rc.text(data, column)
            out[attr] = aspec.kind
        return out

    def _wide(
        self, where: str, wide: WideStages, data: pa.Table, file: Path, resolve: dict[str, str]
    ) -> list[SourceTable]:
        stages = {resolve[c]: s for c, s in wide.columns.items()}
        if wide.pattern is not None:
            rx = re.compile(wide.pattern)
            for c in data.column_names:
                m = rx.search(c)
                if m and c not in stages and c != resolve[wide.deal_id]:
                    stages[c] = m.group(1).strip()
        if not stages:
            raise MappingError(
                f"{self.mapping_name}: {where}.wide.pattern {wide.pattern!r} matches no column "
                f"of {file.name}"
            )
        hints = {"deal_id": f"from column {wide.deal_id!r} via {where}.wide.deal_id"}
        formats = wide.date_format or self.spec.date_format
        return rc.melt_stage_columns(
            data, rc.text(data, resolve[wide.deal_id]), stages, str(file), hints, formats
        )


def _referenced(tspec: TableSpec) -> list[str]:
    cols: list[str] = []
    for fspec in tspec.columns.values():
        cols += fspec.source_columns()
    cols += list(tspec.attributes)
    if tspec.link is not None:
        cols.append(tspec.link.by)
    if tspec.wide is not None:
        cols += [tspec.wide.deal_id, *tspec.wide.columns]
    return list(dict.fromkeys(cols))


def _cases(fspec: FieldSpec, data: pa.Table, resolve: dict[str, str]) -> pa.ChunkedArray:
    """First case whose conditions all hold; else the default; else the source values as
    text, so the pipeline rejects the row quoting them."""
    assert fspec.cases is not None
    n = data.num_rows
    result = pa.chunked_array([rc.nulls(n)])
    decided = rc.falses(n)
    for case in fspec.cases:
        hit = pc.invert(decided)
        for column, accepted in case.when.items():
            values = pc.utf8_lower(rc.text(data, resolve[column]))
            ok = pc.is_in(values, pa.array([a.strip().lower() for a in accepted]))
            hit = pc.and_(hit, pc.fill_null(ok, False))
        result = pc.if_else(hit, pa.scalar(case.then), result)
        decided = pc.or_(decided, hit)
    if fspec.default is not None:
        fallback: pa.ChunkedArray | pa.Scalar = pa.scalar(fspec.default)
    else:
        shown = list(dict.fromkeys(fspec.source_columns()))
        parts = [
            pc.binary_join_element_wise(f"{c}=", pc.fill_null(rc.text(data, resolve[c]), ""), "")
            for c in shown
        ]
        fallback = pc.binary_join_element_wise(*parts, ", ")
    return pc.if_else(decided, result, fallback)
