"""Any export plus a YAML mapping: the mapping's schema, its errors, and three exports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from salesml.errors import MappingError, MissingColumnsError, WrongFileError
from salesml.importers.mapping import load_mapping, read_mapped
from tests.importing import Imported, import_twice

FIXTURES = Path(__file__).parent / "fixtures" / "mapping"
EXAMPLE = FIXTURES / "example"
SHOPIFY = FIXTURES / "shopify"
CRM = FIXTURES / "crm"
DOCS = Path(__file__).parents[1] / "docs" / "mapping.md"


def _import(home: Path, export: Path, mapping: Path, twice: bool = False) -> Iterator[Imported]:
    yield from import_twice(lambda: read_mapped(export, mapping), home, twice)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from _import(tmp_path_factory.mktemp("example"), EXAMPLE, EXAMPLE / "mapping.yaml")


@pytest.fixture(scope="module")
def shopify(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from _import(
        tmp_path_factory.mktemp("shopify"), SHOPIFY / "orders_export.csv", SHOPIFY / "shopify.yaml"
    )


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from _import(tmp_path_factory.mktemp("crm"), CRM, CRM / "crm.yaml", twice=True)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the worked example of docs/mapping.md ---------------------------------------------------


def test_docs_show_the_fixture_files_verbatim() -> None:
    text = DOCS.read_text(encoding="utf-8")
    shown = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.DOTALL)
    assert {p for p, _ in shown} >= {
        "tests/fixtures/mapping/example/deals.csv",
        "tests/fixtures/mapping/example/mapping.yaml",
        "tests/fixtures/mapping/shopify/shopify.yaml",
    }
    root = Path(__file__).parents[1]
    for path, block in shown:
        assert block == (root / path).read_text(encoding="utf-8"), path


def test_worked_example_imports_as_documented(example: Imported) -> None:
    for name, c in example.first.tables.items():
        assert c.input == c.imported + c.updated + c.unchanged + c.rejected, name
    deals, history = example.first.tables["deals"], example.first.tables["stage_history"]
    assert (deals.input, deals.imported, deals.rejected) == (8, 6, 2)
    assert (history.input, history.imported, history.rejected) == (9, 8, 1)
    rows = example.query(
        "SELECT deal_id, status, closed_at, expected_close_date, amount FROM deals "
        "ORDER BY deal_id LIMIT 3"
    )
    assert rows == [
        ("D-101", "won", datetime(2024, 3, 28), None, 24000.0),
        ("D-102", "lost", datetime(2024, 4, 2), None, 8500.0),
        ("D-103", "open", None, date(2024, 6, 30), 12000.0),
    ]
    kinds = dict(example.query("SELECT name, kind FROM _attributes"))
    assert kinds == {"region": "categorical", "seats": "numeric"}
    reasons = example.reasons()
    assert "from column 'value'" in reasons[("deals", "8", "amount")]
    assert "'2024-04-31'" in reasons[("deals", "9", "created_at")]


# --- a won-only order history -----------------------------------------------------------------


def test_orders_become_won_deals_closed_when_placed(shopify: Imported) -> None:
    deals = shopify.first.tables["deals"]
    assert (deals.input, deals.imported, deals.unchanged, deals.rejected) == (26, 21, 1, 4)
    assert shopify.query("SELECT DISTINCT status FROM deals") == [("won",)]
    assert shopify.query("SELECT count(*) FROM deals WHERE closed_at <> created_at") == [(0,)]
    # 2024-01-04 05:49:00 -0500 is 10:49 UTC.
    first = shopify.query(
        "SELECT created_at, amount, currency, account_id, product, lead_source FROM deals "
        "WHERE deal_id = '#1001'"
    )
    assert first == [
        (
            datetime(2024, 1, 4, 10, 49),
            417.96,
            "USD",
            "customer1@example.com",
            "Trail Runner 2",
            "web",
        )
    ]


def test_bad_orders_are_rejected_naming_the_column(shopify: Imported) -> None:
    reasons = shopify.reasons()
    assert "from column 'Created at'" in reasons[("deals", "7", "created_at")]
    assert "from column 'Total'" in reasons[("deals", "10", "amount")]
    assert "different data (lines 16, 27)" in reasons[("deals", "16", "deal_id")]


def test_declared_attribute_kinds_are_kept(shopify: Imported) -> None:
    kinds = dict(shopify.query("SELECT name, kind FROM _attributes"))
    assert kinds == {
        "billing_country": "categorical",
        "discount_code": "categorical",
        "lineitem_quantity": "numeric",
    }


# --- a multi-table CRM export with European formats ------------------------------------------


def test_crm_export_counts_and_reimport(crm: Imported) -> None:
    expected = {
        "reps": (4, 4),
        "deals": (33, 26),
        "stage_history": (72, 65),
        "activities": (19, 18),
    }
    for name, (n, imported) in expected.items():
        c = crm.first.tables[name]
        assert (c.input, c.imported, c.updated) == (n, imported, 0)
        assert c.input == c.imported + c.unchanged + c.rejected
        again = crm.second.tables[name]
        assert (again.imported, again.updated, again.unchanged + again.rejected) == (0, 0, n)


def test_crm_values_are_mapped(crm: Imported) -> None:
    rows = crm.query(
        "SELECT status, created_at, closed_at, expected_close_date, amount, attr_segment, "
        "attr_seats FROM deals WHERE deal_id IN ('CRM-0001', 'CRM-0002') ORDER BY deal_id"
    )
    assert rows == [
        (
            "lost",
            datetime(2023, 10, 8, 9),
            datetime(2023, 10, 18),
            None,
            48000.0,
            "Mid-Market",
            10.0,
        ),
        ("open", datetime(2023, 10, 14, 10), None, date(2024, 9, 9), 96000.0, "Enterprise", 15.0),
    ]
    assert crm.query("SELECT status FROM deals WHERE deal_id = 'CRM-0005'") == [("won",)]
    reps = crm.query("SELECT name, team, manager, hired_at FROM reps WHERE owner_id = 'u03'")
    assert reps == [("Maria Gonzalez", "Mid-Market", "Sam Okafor", date(2022, 6, 1))]
    types = dict(crm.query("SELECT type, count(*) FROM activities GROUP BY 1"))
    assert set(types) == {"call", "email", "meeting", "demo", "other"}


def test_crm_stage_history_comes_from_wide_columns(crm: Imported) -> None:
    rows = crm.query(
        "SELECT stage, changed_at FROM stage_history WHERE deal_id = 'CRM-0003' ORDER BY 2"
    )
    assert [r[0] for r in rows] == ["Qualified", "Demo", "Proposal", "Negotiation"]
    assert rows[0][1] == datetime(2023, 10, 20, 11)


def test_crm_rejects_name_the_source_column(crm: Imported) -> None:
    reasons = crm.reasons()
    status = reasons[("deals", "31", "status")]
    assert "'Pending review'" in status and "from column 'Status'" in status
    assert "from column 'Value'" in reasons[("deals", "29", "amount")]
    assert "before created_at" in reasons[("deals", "30", "closed_at")]
    assert "'2024-13-01'" in reasons[("deals", "28", "created_at")]
    assert "different data" in reasons[("deals", "32", "deal_id")]
    assert "is not in deals" in reasons[("activities", "20", "deal_id")]
    deals = crm.first.tables["deals"]
    assert (deals.unchanged, deals.rejected) == (1, 6)


# --- mapping features, read without the pipeline ---------------------------------------------


def test_cases_from_and_column_lists(tmp_path: Path) -> None:
    write(
        tmp_path,
        "opps.csv",
        "Id,IsWon,IsClosed,Created,Backup Created,Plan\n"
        "1,1,1,2024-01-01,,Yes\n"
        "2,false,TRUE,,2024-01-02,No\n"
        "3,0,0,2024-01-03,,\n"
        "4,maybe,0,2024-01-04,,\n",
    )
    mapping = write(
        tmp_path,
        "m.yaml",
        "tables:\n"
        "  deals:\n"
        "    columns:\n"
        "      deal_id: {from: Id}\n"
        "      created_at: {column: [Created, Backup Created]}\n"
        "      status:\n"
        "        cases:\n"
        "          - {when: {IsWon: true}, then: won}\n"
        "          - {when: {IsWon: false, IsClosed: true}, then: lost}\n"
        "          - {when: {IsWon: [false], IsClosed: [false]}, then: open}\n"
        "      deal_type: {column: Plan, map: {Yes: premium, No: basic}}\n",
    )
    data = read_mapped(tmp_path / "opps.csv", mapping).tables[0].data
    assert data.column("status").to_pylist() == ["won", "lost", "open", "IsWon=maybe, IsClosed=0"]
    assert data.column("created_at").to_pylist() == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
    ]
    # YAML's Yes / No stay text (YAML 1.2 booleans are only true and false).
    assert data.column("deal_type").to_pylist() == ["premium", "basic", None, None]


def test_date_formats_apply_to_date_fields_only(tmp_path: Path) -> None:
    write(tmp_path, "d.csv", "id,c,e,v\n1,31/01/2024,2024-02-01,10\n")
    mapping = write(
        tmp_path,
        "m.yaml",
        "date_formats: '%d/%m/%Y'\n"
        + MINIMAL
        + "      status: {value: open}\n"
        + "      expected_close_date: {column: e, date_format: ['%Y-%m-%d']}\n"
        + "      amount: v\n",
    )
    source = read_mapped(tmp_path / "d.csv", mapping).tables[0]
    assert source.date_formats == {"created_at": ["%d/%m/%Y"], "expected_close_date": ["%Y-%m-%d"]}


def test_keep_unmapped_columns_as_attributes(tmp_path: Path) -> None:
    write(
        tmp_path, "d.csv", "ID,Created,Won,Region__c,Seats,Used Elsewhere\n1,2024-01-01,1,EU,4,x\n"
    )
    mapping = write(
        tmp_path,
        "m.yaml",
        "tables:\n"
        "  deals:\n"
        "    columns:\n"
        "      deal_id: ID\n"
        "      created_at: Created\n"
        "      closed_at: Created\n"
        "      status: {column: Won, map: {'1': won, '0': lost}}\n"
        "      name: used elsewhere\n"
        "    attributes:\n"
        "      Seats: {kind: numeric, name: licences}\n"
        "    keep_unmapped: true\n",
    )
    source = read_mapped(tmp_path, mapping).tables[0]
    assert source.attributes == {"attr_licences": "numeric", "attr_region": None}
    assert source.data.column("name").to_pylist() == ["x"]  # matched ignoring case


def test_keep_unmapped_never_keeps_wide_stage_columns(tmp_path: Path) -> None:
    text = (CRM / "crm.yaml").read_text(encoding="utf-8")
    text = text.replace("      Seats: numeric\n", "      Seats: numeric\n    keep_unmapped: true\n")
    deals = next(s for s in read_mapped(CRM, write(tmp_path, "m.yaml", text)).tables)
    assert deals.table == "deals"
    assert set(deals.attributes) == {"attr_segment", "attr_seats", "attr_notes"}


def test_typed_parquet_columns_stay_typed(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": ["a", "b"],
            "created": pa.array([datetime(2024, 1, 1), datetime(2024, 2, 1)], pa.timestamp("s")),
            "total": [10.5, 20.0],
        }
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    mapping = write(
        tmp_path,
        "m.yaml",
        "tables:\n  deals:\n    file: '*.parquet'\n    columns:\n      deal_id: id\n"
        "      created_at: created\n      closed_at: created\n      status: {value: won}\n"
        "      amount: total\n",
    )
    data = read_mapped(tmp_path, mapping).tables[0].data
    assert pa.types.is_timestamp(data.column("created_at").type)
    assert data.column("amount").to_pylist() == [10.5, 20.0]
    assert data.column("status").to_pylist() == ["won", "won"]


# --- errors -----------------------------------------------------------------------------------

MINIMAL = "tables:\n  deals:\n    columns:\n      deal_id: id\n      created_at: c\n"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            MINIMAL + "      status: s\n      amout: v\n",
            r"tables\.deals\.columns\.amout: 'amout' is not a field of deals; valid: deal_id, "
            r"name, created_at, status",
        ),
        (
            MINIMAL + "      status: s\n  opportunities: {columns: {}}\n",
            r"tables\.opportunities: 'opportunities' is not a canonical table; use one of deals",
        ),
        (
            MINIMAL.replace("columns", "colums"),
            r"tables\.deals: unknown key 'colums'; allowed keys: file, columns, attributes",
        ),
        (
            MINIMAL + "      status: {column: s, map: {W: Won}}\n",
            r"tables\.deals\.columns\.status: 'Won' is not a valid status; use open, won, lost",
        ),
        (MINIMAL, r"tables\.deals\.columns: missing required field\(s\) status"),
        (
            MINIMAL + "      status: s\n    attributes: {Seats: number}\n",
            r"tables\.deals\.attributes\.Seats\.kind: Input should be 'categorical' or 'numeric'",
        ),
        (
            MINIMAL + "      status: {value: won, column: s}\n",
            r"tables\.deals\.columns\.status: give exactly one of column \(or from\), value or "
            r"cases; got column, value",
        ),
        (
            MINIMAL + "      status: s\n  stage_history:\n    wide: {deal_id: id, pattern: x}\n",
            r"tables\.stage_history\.wide: pattern needs exactly one \(group\)",
        ),
        (
            MINIMAL + "      status: s\n      amount: {column: v, date_format: '%Y'}\n",
            r"tables\.deals\.columns\.amount\.date_format: amount is not a date",
        ),
        ("tables: {}\n", r"tables: names no table"),
        (
            "tables:\n  leads: {columns: {lead_id: id, created_at: c}, link: {by: id}}\n",
            r"tables\.leads\.link: needs the deals mapped in the same file",
        ),
        ("- just\n- a list\n", r"must be a YAML mapping with a 'tables' key"),
        ("tables: [unclosed\n", r"is not valid YAML"),
        ("version: 2\n" + MINIMAL + "      status: s\n", r"version: Input should be 1"),
    ],
)
def test_bad_mappings_name_the_key_and_what_is_allowed(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        load_mapping(write(tmp_path, "bad.yaml", yaml_text))


def test_a_missing_source_column_is_named_with_the_mapping_key(tmp_path: Path) -> None:
    write(tmp_path, "d.csv", "id,c\n1,2024-01-01\n")
    mapping = write(tmp_path, "m.yaml", MINIMAL + "      status: Stage\n")
    with pytest.raises(
        MissingColumnsError, match=r"missing required column\(s\) Stage.*tables\.deals"
    ):
        read_mapped(tmp_path / "d.csv", mapping)


def test_a_file_the_mapping_names_must_exist(tmp_path: Path) -> None:
    write(tmp_path, "other.csv", "id\n1\n")
    mapping = write(
        tmp_path,
        "m.yaml",
        MINIMAL.replace("    columns", "    file: deals*.csv\n    columns") + "      status: s\n",
    )
    with pytest.raises(WrongFileError, match=r"matching 'deals\*\.csv'.*found: other\.csv"):
        read_mapped(tmp_path, mapping)
    with pytest.raises(MappingError, match="does not exist"):
        read_mapped(tmp_path, tmp_path / "missing.yaml")
    # a single file given as PATH must be the file the mapping names (never a sibling)
    write(tmp_path, "deals_2025.csv", "id\n1\n")
    with pytest.raises(MappingError, match=r"'deals\*\.csv'.*single file 'other\.csv'"):
        read_mapped(tmp_path / "other.csv", mapping)
