"""Reading and typing the source: no row silently dropped or mis-typed."""

import datetime as dt

import pandas as pd
import pytest
from conftest import ROOT, write_params

from pipeline.core.errors import SourceError
from pipeline.core.settings import load_config
from pipeline.data.source import assign_days, read_source_text, resolve_schema
from pipeline.data.typed import canonical_label, coerce_types


def _dataset(tmp_path, csv_text: str, **dataset_overrides):
    (tmp_path / "src.csv").write_text(csv_text)
    base = {
        "dataset": {
            "name": "toy",
            "source": {"uri": str(tmp_path / "src.csv"), "format": "csv"},
            "id_column": "id",
            "target": {"column": "y", "positive_class": "1"},
            "features": {"categorical": ["colour"]},
            "batching": {"start_date": "2025-01-01", "days": 3, "label_delay_days": 1},
            **dataset_overrides,
        },
        "training": {"window_days": 2, "holdout_days": 1},
    }
    return load_config(write_params(tmp_path, base)).dataset


def test_demo_source_loads_every_row_with_declared_types():
    config = load_config(ROOT / "params.yaml")
    text = read_source_text(config.dataset)
    schema = resolve_schema(config.dataset, text)
    typed = coerce_types(text, schema)
    assert len(typed) == 30000  # the README's row count: nothing dropped
    assert typed["AGE"].isna().sum() == 2  # the two text `nan` ages, and nothing else
    assert typed["LIMIT_BAL"].dtype == "float64"
    # '5.00E+05' in row ID=7 is 500000, not NaN and not text
    assert typed.loc[typed["ID"] == 7, "LIMIT_BAL"].item() == 500000.0
    assert set(typed["SEX"].unique()) == {"1", "2"}
    assert schema.categorical == ("SEX", "EDUCATION", "MARRIAGE")
    assert "PAY_AMT6" in schema.numeric and "ID" not in schema.features


def test_text_in_numeric_column_names_column_and_rows(tmp_path):
    # Undeclared, `amount` would be inferred categorical (one value is text); declared numeric, the
    # misfit must be reported, not turned into NaN.
    ds = _dataset(
        tmp_path,
        "id,amount,colour,y\n1,10,red,0\n2,abc,blue,1\n3,1.5E+02,red,0\n",
        features={"categorical": ["colour"], "numeric": ["amount"]},
    )
    text = read_source_text(ds)
    schema = resolve_schema(ds, text)
    with pytest.raises(SourceError, match=r"column 'amount': 1 value\(s\) are not numbers \(rows \[1\]\)"):
        coerce_types(text, schema)


def test_missing_configured_column_is_refused_at_first_read(tmp_path):
    from pipeline import steps
    from pipeline.core.errors import ConfigError

    dataset = _dataset(tmp_path, "id,colour,y\n1,red,0\n", features={"categorical": ["colour"], "numeric": ["amount"]})
    with pytest.raises(ConfigError, match=r"dataset.features.numeric names \['amount'\]"):
        steps.ingest("2025-01-01", str(tmp_path / "params.yaml"))
    assert dataset.features.numeric == ("amount",)  # loading the params read no data


def test_inference_and_na_spellings(tmp_path):
    ds = _dataset(tmp_path, "id,amount,colour,y\n1,nan,red,0\n2,NA,,1\n3,2.00E+00,blue,0\n")
    text = read_source_text(ds)
    schema = resolve_schema(ds, text)
    assert schema.numeric == ("amount",) and schema.categorical == ("colour",)
    typed = coerce_types(text, schema)
    assert typed["amount"].tolist()[2] == 2.0 and typed["amount"].isna().sum() == 2
    assert typed["colour"].isna().sum() == 1


def test_canonical_labels_unify_numeric_spellings_only():
    values = pd.Series(["1.00E+00", "1", "0.0", "01234", "yes", None], dtype=object)
    assert canonical_label(values).tolist()[:5] == ["1", "1", "0", "01234", "yes"]


def test_day_assignment_is_stable_and_covers_every_row(tmp_path):
    ds = _dataset(tmp_path, "id,colour,y\n" + "".join(f"{i},red,{i % 2}\n" for i in range(300)))
    text = read_source_text(ds)
    first, second = assign_days(ds, text), assign_days(ds, text.iloc[::-1])
    assert first.notna().all() and len(first) == 300
    assert set(first) == {dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 3)}
    assert (first == second.loc[first.index]).all()  # depends on the id only, not on row order


def test_event_time_column_decides_the_day(tmp_path):
    from pipeline.core.storage import open_storage
    from pipeline.data.ingest import ingest_day

    csv = "id,ts,x,y\n1,2025-01-01T23:59:00Z,1.0,0\n2,2025-01-02T00:00:01Z,2.0,1\n3,2025-01-02 10:00:00,3.0,0\n"
    ds = _dataset(tmp_path, csv, event_time_column="ts", features={})
    text = read_source_text(ds)
    assert assign_days(ds, text).tolist() == [dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 2)]
    config = load_config(tmp_path / "params.yaml")
    result = ingest_day(config, open_storage(str(tmp_path / "st")), dt.date(2025, 1, 2))
    assert result["rows"] == 2
    raw = pd.read_parquet(result["staged"])  # staged for the audit; nothing published yet
    assert list(raw["id"]) == [2, 3] and str(raw["ts"].dtype).startswith("datetime64")
    assert "y" not in raw.columns  # the target never enters the raw batch


def test_unreadable_event_time_is_named(tmp_path):
    ds = _dataset(tmp_path, "id,ts,y\n1,2025-01-01,0\n2,yesterday,1\n", event_time_column="ts", features={})
    with pytest.raises(
        SourceError, match=r"event-time column 'ts': 1 row\(s\) without a readable timestamp \(rows \[1\]\)"
    ):
        assign_days(ds, read_source_text(ds))


def test_a_label_problem_is_not_swallowed_by_daily_ingest(tmp_path):
    """Days without source rows mean 'no labels arrive'; a missing target value is an error."""
    from pipeline import steps
    from pipeline.core.errors import IngestError

    rows = "".join(f"{i},{'red' if i % 2 else 'blue'},{'' if i == 4 else i % 2}\n" for i in range(40))
    _dataset(tmp_path, "id,colour,y\n" + rows)
    params = str(tmp_path / "params.yaml")
    first = steps.ingest("2025-01-01", params)  # labels of 2024-12-31: no rows that day
    assert first["labels"] is None and first["rows"] > 0
    config = load_config(params)
    from pipeline.data.source import assign_days

    day_of_4 = assign_days(config.dataset, read_source_text(config.dataset))[4]
    with pytest.raises(IngestError, match="no value in target column 'y'"):
        steps.ingest(day_of_4 + dt.timedelta(days=1), params)


def test_arrow_number_parsing_equals_pandas_on_every_spelling():
    """to_float (Arrow's cast first) gives pd.to_numeric's values on plain numbers and on
    everything Arrow refuses (which pandas then parses)."""

    from pipeline.data.source import to_float

    spellings = ["1", "2.5", "-3e2", "+5", ".5", "5.", "1E5", "-0", "0.0", "1e-400", "1e400", "inf", "-Infinity"]
    spellings += ["nan", "NaN", "", "  ", " 2", "0x10", "1_000", "１２", "1d5", "1,5", "abc", None]
    for value in spellings:
        column = pd.Series(["7", value, None], dtype=object)
        got, want = to_float(column), pd.to_numeric(column, errors="coerce").astype("float64")
        assert got.equals(want), value
    labels = pd.Series(["1", "1.00E+00", None, "abc", "2.5", "x.y", "0.0", "-3e0"], index=range(5, 13))
    assert canonical_label(labels).tolist()[:2] == ["1", "1"]
    assert canonical_label(labels).tolist()[3:] == ["abc", "2.5", "x.y", "0", "-3"]
    assert canonical_label(labels).isna().tolist() == [False, False, True, False, False, False, False, False]


# --------------------------------------------------------------------------- the split's Arrow path


def test_arrow_normalising_equals_pandas_on_every_spelling():
    """The split strips cells and nulls the missing spellings in Arrow: the same cells as
    `normalise` (Arrow's Unicode whitespace is Python's), including odd whitespace and tokens."""
    import pyarrow as pa

    from pipeline.data.reading import normalise, normalise_array

    cells = ["1", " 2 ", "\t3\n", "\u00a04\u2003", "NA", " NA ", "", "   ", "nan", "None", "x y", "\x1c5\x1f", "é "]
    tokens = ("", "NA", "nan", "None")
    want = normalise(pd.DataFrame({"c": pd.Series(cells, dtype=object)}), tokens)["c"].tolist()
    assert normalise_array(pa.array(cells), tokens).to_pylist() == want


def _clean_day_rows(n: int = 200) -> pd.DataFrame:
    rows = {
        "id": [str(1000 + i) for i in range(n)],
        "amount": [f"{i * 1.5:.2f}" if i % 7 else f"{i}E+00" for i in range(n)],
        "colour": [["red", "1.00E+00", "blue", None][i % 4] for i in range(n)],
        "age": [str(20 + i % 50) if i % 11 else None for i in range(n)],
        "y": ["1" if i % 3 else "0" for i in range(n)],
    }
    return pd.DataFrame(rows, dtype=object)


@pytest.mark.parametrize("variant", ["clean", "duplicate_rows", "conflicting_ids", "misfit", "infinite", "derived_id"])
def test_arrow_typing_equals_row_typing(variant):
    """A day held as Arrow is typed column-wise (type_table) into exactly what type_rows gives:
    same frame, dtypes, bad rows, problems and duplicate counts; a day with a misfit is left to
    type_rows (None), so every message stays type_rows' own."""
    import numpy as np
    import pyarrow as pa

    from pipeline.data.source import Schema
    from pipeline.data.typed import type_rows, type_table

    text = _clean_day_rows()
    if variant == "duplicate_rows":
        text = pd.concat([text, text.iloc[[3, 5]]], ignore_index=True)
    if variant == "conflicting_ids":
        text.loc[7, "id"] = text.loc[8, "id"]
    if variant == "misfit":
        text.loc[9, "amount"] = "12 EUR"
    if variant == "infinite":
        text.loc[9, "amount"] = "inf"
    lines = np.arange(2, 2 + len(text))
    text.index = pd.Index(lines)
    schema = Schema(
        id_column="row_key" if variant == "derived_id" else "id",
        target_column="y",
        event_time_column=None,
        numeric=("amount", "age"),
        categorical=("colour",),
        pii=(),
        id_is_integer=variant != "derived_id",
        id_derived=variant == "derived_id",
    )
    table = pa.Table.from_pandas(text.reset_index(drop=True), preserve_index=False)
    fast = type_table(table, lines, schema, "y")
    slow = type_rows(text, schema, "y")
    if variant in ("misfit", "infinite", "derived_id"):
        assert fast is None and len(slow.bad) == (0 if variant == "derived_id" else 1)
        return
    assert fast is not None
    pd.testing.assert_frame_equal(fast.typed, slow.typed)
    pd.testing.assert_series_equal(fast.bad, slow.bad)
    assert fast.problems == slow.problems and fast.duplicates_dropped == slow.duplicates_dropped
    assert pa.Table.from_pandas(fast.typed).schema == pa.Table.from_pandas(slow.typed).schema
    if variant == "duplicate_rows":
        assert fast.duplicates_dropped == 2
    if variant == "conflicting_ids":
        assert len(fast.bad) == 2 and "id shared by rows" in fast.bad.iloc[0]


def test_split_source_stages_what_row_typing_stages(tmp_path):
    """End to end through the split: a day's staged batch from the Arrow path equals the batch
    the row-by-row path stages from the same delivery."""
    import pyarrow.parquet as pq

    from pipeline.core.storage import open_storage
    from pipeline.data import contract as contracts
    from pipeline.data import ingest
    from pipeline.data.typed import type_rows, type_table

    rows = "".join(f"{i}, {i * 2.5} ,{'red' if i % 2 else '1.0'},{i % 2}\n" for i in range(120))
    _dataset(tmp_path, "id,amount,colour,y\n" + rows, features={"categorical": ["colour"]})
    config = load_config(tmp_path / "params.yaml")
    storage = open_storage(str(tmp_path / "st"))
    day = dt.date(2025, 1, 2)
    done = ingest.stage(config, storage, day)
    delivery = done.delivery
    assert delivery.table is not None and delivery.lines is not None
    schema = contracts.require(config, storage).schema
    assert type_table(delivery.table, delivery.lines, schema, "y") is not None  # the Arrow path ran
    staged = pq.read_table(done.result["staged"])
    slow = type_rows(delivery.text, schema, "y")
    want = ingest._table(ingest._sorted_by_id(slow.typed.loc[:, list(schema.batch_columns)], "id"))
    assert staged.select(want.column_names).equals(want)
    assert staged.num_rows == done.result["rows"] > 0
    assert (delivery.text["amount"].str.strip() == delivery.text["amount"]).all()  # stripped in the split


def test_prefetched_hands_on_items_and_errors():
    from pipeline.ops.threads import prefetched

    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise SourceError("block 2 unreadable")

    seen = []
    with pytest.raises(SourceError, match="block 2 unreadable"):
        for item in prefetched(broken()):
            seen.append(item)
    assert seen == [1]


def test_a_damaged_split_file_is_an_artefact_error_naming_it(tmp_path):
    """A damaged cache is not a transient error: typed (no retries), naming the file and the remedy."""
    from pipeline.core.errors import ArtefactError
    from pipeline.core.storage import open_storage
    from pipeline.data import source_index

    _dataset(tmp_path, "id,colour,y\n" + "".join(f"{i},red,{i % 2}\n" for i in range(60)))
    config = load_config(tmp_path / "params.yaml")
    storage = open_storage(str(tmp_path / "st"))
    key, manifest = source_index.source_index(config, storage)
    day = sorted(manifest["days"])[0]
    (tmp_path / "st" / key / source_index.split_file(day)).write_bytes(b"not arrow at all")
    with pytest.raises(ArtefactError, match=rf"dt={day}\.arrow: not a readable Arrow file.*splits the source again"):
        source_index.read_day_from_index(config, storage, dt.date.fromisoformat(day))
