"""Parquet export/import: a round trip gives the same search results in every mode; an import is
validated whole (model, dimension, every row) and writes nothing when any of it is wrong."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.chunking import Chunk
from engine.collection import Collection, DocumentRecord
from engine.errors import InputError, ModelMismatchError, VariantMismatchError
from engine.page_records import Page
from engine.transfer import export_collection, import_collection

DIM = 12


def _fill(c: Collection, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    all_vectors = []
    for d in range(3):
        texts = [f"document {d} chunk {i} about {'valves' if i % 3 else 'pumps'} part QX-{d}{i}" for i in range(40)]
        pages = [Page(1, "\n".join(texts[:20]), "text"), Page(2, "\n".join(texts[20:]), "text", notes=("n",))]
        chunks, cursor = [], {1: 0, 2: 0}
        for i, text in enumerate(texts):
            page = 1 if i < 20 else 2
            start = pages[page - 1].text.index(text, cursor[page])
            cursor[page] = start + len(text)
            chunks.append(Chunk(i, page, start, start + len(text), text, ("Part", f"S{i // 10}"), 9))
        vectors = rng.normal(size=(40, DIM)).astype(np.float32)
        record = DocumentRecord(f"{d}" * 64, f"doc{d}.pdf", 2, 40, "text", 0, 123, "2026-01-01T00:00:00Z", "")
        c.add_document(record, vectors, chunks, "m", pages=pages, original=b"%PDF")
        all_vectors.append(vectors)
    return np.concatenate(all_vectors)


def _hits(c: Collection, vector: np.ndarray, text: str) -> list[list[dict]]:
    return [[h.to_dict() for h in c.search(vector, k=8, mode="dense")],
            [h.to_dict() for h in c.search(query_text=text, k=8, mode="keyword")],
            [h.to_dict() for h in c.search(vector, query_text=text, k=8, mode="hybrid")]]


@pytest.fixture()
def source(tmp_path):
    c = Collection(tmp_path, "source")
    c.create("m", "fp32", DIM, {"size": 64}, search={"mode": "hybrid", "ann": {"threshold": 50}})
    return c, _fill(c)


def test_round_trip_gives_identical_search_results(tmp_path, source):
    c, vectors = source
    out = export_collection(c, tmp_path / "out" / "source.parquet")
    assert (out.documents, out.chunks) == (3, 120)
    table = pq.read_table(out.file)
    assert table.schema.field("vector").type == pa.list_(pa.float32(), DIM) and table.num_rows == 120
    assert json.loads(table.schema.metadata[b"studio"])["model"] == "m"
    copy = Collection(tmp_path, "copy")
    result = import_collection(copy, out.file, {"m": DIM})
    assert (result.documents, result.chunks) == (3, 120)
    info = copy.info()
    assert info.search == c.info().search and info.chunking == {"size": 64} and "ann" in info.indexes
    for q in (vectors[5], vectors[77] + 0.1, np.ones(DIM)):
        assert _hits(copy, q, "pumps QX-17") == _hits(c, q, "pumps QX-17")
    assert copy.pages_of("1" * 64) == c.pages_of("1" * 64)
    assert copy.chunks_of("2" * 64)[1] == c.chunks_of("2" * 64)[1]


def _rewrite(path, out, change):
    table = pq.read_table(path)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    change(columns)
    pq.write_table(pa.table(columns, schema=table.schema), out)
    return out


@pytest.mark.parametrize("change, error", [
    (lambda c: c["vector"].__setitem__(7, [0.0] * DIM), "Row 7: the vector is not finite"),
    (lambda c: c["text"].__setitem__(50, "  "), "Row 50: the chunk text is empty"),
    (lambda c: c["end"].__setitem__(90, 10**6), "Row 90: offsets"),
    (lambda c: c["page"].__setitem__(3, 9), "Row 3: page 9"),
    (lambda c: c["chunk_index"].__setitem__(41, 5), "Row 41: chunk_index 5"),
    (lambda c: c["document_pages"].__setitem__(40, None), "Row 40: the first row of a document"),
])
def test_a_bad_row_rejects_the_whole_import(tmp_path, source, change, error):
    c, _ = source
    good = export_collection(c, tmp_path / "good.parquet").file
    bad = _rewrite(good, tmp_path / "bad.parquet", change)
    target = Collection(tmp_path, "target")
    with pytest.raises(InputError, match=error):
        import_collection(target, bad, {"m": DIM})
    assert not target.exists  # nothing written, not even an empty collection


def _set_record(columns: dict, row: int, **fields) -> None:
    record = json.loads(columns["document_record"][row])
    record.update(fields)
    columns["document_record"][row] = json.dumps(record)
    if "doc_id" in fields:  # every row of that document, as a hostile file would have it
        old = columns["doc_id"][row]
        columns["doc_id"] = [fields["doc_id"] if value == old else value for value in columns["doc_id"]]


def _set_pages(columns: dict, row: int, change) -> None:
    pages = json.loads(columns["document_pages"][row])
    change(pages)
    columns["document_pages"][row] = json.dumps(pages)


@pytest.mark.parametrize("change, error", [
    # a doc_id names the segment files: "../" in one wrote them outside the collection (to / from a data dir 4 deep)
    (lambda c: _set_record(c, 0, doc_id="../../../../../../tmp/escaped-by-import"), "Row 0: .*not a document id"),
    (lambda c: _set_record(c, 40, doc_id="1" * 63 + "/"), "Row 40: .*not a document id"),
    (lambda c: _set_record(c, 0, doc_id="A" * 64), "Row 0: .*not a document id"),
    (lambda c: _set_record(c, 0, chunks="40"), "Row 0: .*'chunks' should be a JSON int"),
    (lambda c: _set_record(c, 0, notes=[1]), "Row 0: .*'notes' should be a list of strings"),
    (lambda c: _set_record(c, 0, extra=1), "Row 0: .*unknown key"),
    (lambda c: c["document_record"].__setitem__(0, json.dumps("text")), "Row 0: .*not an object"),
    (lambda c: _set_pages(c, 0, lambda pages: pages[0].__setitem__("text", 5)), "Row 0: .*page 1.*'text'"),
    (lambda c: _set_pages(c, 0, lambda pages: pages[1].__setitem__("number", 1)), "Row 0: .*page 1 twice"),
    (lambda c: _set_pages(c, 0, lambda pages: pages.append(7)), "Row 0: .*page 3 is a JSON int"),
])
def test_a_malformed_record_or_page_rejects_the_import_before_anything_is_written(tmp_path, source, change, error):
    c, _ = source
    good = export_collection(c, tmp_path / "good.parquet").file
    bad = _rewrite(good, tmp_path / "bad.parquet", change)
    before = {p for p in tmp_path.parent.rglob("*")}
    target = Collection(tmp_path / "data" / "collections", "target")
    with pytest.raises(InputError, match=error):
        import_collection(target, bad, {"m": DIM})
    assert not target.exists
    assert {p for p in tmp_path.parent.rglob("*")} - before == set()  # not a file, here or above


def test_a_store_refuses_a_doc_id_that_is_not_a_digest(tmp_path):
    # the import's check has a second line behind it: whatever builds a record, the store names no file by it
    c = Collection(tmp_path, "papers")
    c.create("m", "fp32", DIM, {})
    record = DocumentRecord("../../escaped" + "0" * 51, "x.pdf", 1, 1, "text", 0, 1, "2026-01-01T00:00:00Z", "")
    chunk = Chunk(0, 1, 0, 4, "text", (), 1)
    with pytest.raises(InputError, match="not a document id"):
        c.add_document(record, np.ones((1, DIM), np.float32), [chunk], "m", pages=[Page(1, "text", "text")])
    assert c.info().documents == ()
    assert not list(tmp_path.rglob("escaped*"))  # its stem, "../../escaped000", pointed here from segments/


def test_model_and_dimension_are_checked(tmp_path, source):
    c, _ = source
    good = export_collection(c, tmp_path / "good.parquet").file
    with pytest.raises(ModelMismatchError, match="not in the registry"):
        import_collection(Collection(tmp_path, "a"), good, {"other": DIM})
    with pytest.raises(ModelMismatchError, match="dimensions"):
        import_collection(Collection(tmp_path, "b"), good, {"m": DIM + 1})
    other = Collection(tmp_path, "other")
    other.create("m2", "fp32", DIM, {})
    with pytest.raises(ModelMismatchError, match="import into a new collection"):
        import_collection(other, good, {"m": DIM, "m2": DIM})
    assert other.info().documents == ()
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable parquet"):
        import_collection(Collection(tmp_path, "c"), tmp_path / "junk.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "plain.parquet")
    with pytest.raises(InputError, match="not a collection export"):
        import_collection(Collection(tmp_path, "d"), tmp_path / "plain.parquet")


def _set_meta(path, out, **fields):
    table = pq.read_table(path)
    meta = {**json.loads(table.schema.metadata[b"studio"]), **fields}
    pq.write_table(table.replace_schema_metadata({b"studio": json.dumps(meta).encode()}), out)
    return out


def test_an_export_of_another_variant_is_not_mixed_into_a_collection(tmp_path, source):
    c, _ = source
    good = export_collection(c, tmp_path / "good.parquet").file
    int8 = _set_meta(good, tmp_path / "int8.parquet", variant="int8")
    target = Collection(tmp_path, "target")
    target.create("m", "fp32", DIM, {})
    with pytest.raises(VariantMismatchError, match="holds fp32 vectors of m; the export's are int8"):
        import_collection(target, int8, {"m": DIM})
    assert target.info().documents == ()
    import_collection(Collection(tmp_path, "fresh"), int8, {"m": DIM})  # a new collection takes the export's variant
    assert Collection(tmp_path, "fresh").info().variant == "int8"


@pytest.mark.parametrize("version", [2, 99, "1", None, [1]])
def test_an_export_of_another_format_is_refused_before_anything_is_made(tmp_path, source, version):
    c, _ = source
    future = _set_meta(export_collection(c, tmp_path / "good.parquet").file, tmp_path / "future.parquet",
                       format=version)
    target = Collection(tmp_path, "target")
    with pytest.raises(InputError, match=r"is an export of format .*; this studio reads format 1"):
        import_collection(target, future, {"m": DIM})
    assert not target.exists


def test_importing_into_an_existing_collection_adds_its_documents(tmp_path, source):
    c, vectors = source
    good = export_collection(c, tmp_path / "good.parquet").file
    target = Collection(tmp_path, "target")
    target.create("m", "fp32", DIM, {}, search={"mode": "dense"})
    import_collection(target, good)
    import_collection(target, good)  # the same documents again: replaced, not duplicated
    assert target.info().chunk_count == 120
    assert target.search(vectors[3], k=1)[0].text == c.search(vectors[3], k=1, mode="dense")[0].text


def test_cli_export_import_and_search_modes(tmp_path, capsys):
    from engine.cli import main

    c = Collection(tmp_path / "collections", "src")
    c.create("m", "fp32", DIM, {}, search={"mode": "hybrid"})
    _fill(c)
    out = tmp_path / "src.parquet"
    assert main(["export", "--collection", "src", str(out), "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chunks"] == 120
    assert main(["import", "--collection", "dst", str(out), "--data-dir", str(tmp_path), "--json"]) == 2
    assert "not in the registry" in json.loads(capsys.readouterr().out)["message"]  # model "m" is unknown here
    assert not Collection(tmp_path / "collections", "dst").exists
    assert main(["search", "QX-17 pumps", "--collection", "src", "--mode", "keyword", "--data-dir", str(tmp_path),
                 "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["text"].endswith("QX-17") and hits[0]["retrievers"].keys() == {"keyword"}
    assert main(["reindex", "--collection", "src", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["indexes"]["keyword"].startswith("keyword-g")


def test_names_and_ids_end_where_their_pattern_does():
    """``$`` also matches before a final newline: every name that becomes a path is matched to its very end."""
    from engine.collection_format import SEGMENT_STEM, check_doc_id
    from engine.registry import NAME_PATTERN

    with pytest.raises(ValueError, match="not a document id"):
        check_doc_id("a" * 64 + "\n")
    assert not SEGMENT_STEM.match("0123456789abcdef-g1\n") and not NAME_PATTERN.match("model\n")


@pytest.mark.parametrize("key, value, words", [
    ("variant", ["x"], "variant"), ("variant", "fp64", "variant"), ("chunking", "abc", "chunking"),
    ("chunking", 5, "chunking"), ("search", "x", "search settings"), ("search", {"language": ["en"]}, "search settings"),
    ("search", {"dense_weight": "high"}, "search settings"), ("search", {"mode": "semantic"}, "search settings"),
])
def test_an_exports_settings_of_the_wrong_shape_are_refused_before_anything_is_made(tmp_path, source, key, value, words):
    """Each was a TypeError/AttributeError (an HTTP 500), or ("variant": ["x"]) a collection no search could use."""
    c, _ = source
    good = pq.read_table(export_collection(c, tmp_path / "good.parquet").file)
    meta = json.loads(good.schema.metadata[b"studio"])
    meta[key] = value
    bad = tmp_path / "bad.parquet"
    pq.write_table(good.replace_schema_metadata({"studio": json.dumps(meta)}), bad)
    target = Collection(tmp_path, "target")
    with pytest.raises(InputError, match=words):
        import_collection(target, bad, {"m": DIM})
    assert not target.exists


def test_an_export_that_decodes_to_far_more_than_its_size_is_refused_while_reading(tmp_path, source):
    """A 14 KB parquet of one dictionary-coded text in 200,000 rows decoded to 3.3 GB (a MemoryError traceback, an
    HTTP 500 within the 16 MB body limit). Reading stops once it would hold more than decoded_limit."""
    from engine.transfer import decoded_limit

    c, _ = source
    meta = pq.read_table(export_collection(c, tmp_path / "good.parquet").file).schema.metadata
    rows = 200_000
    zeros = pa.array(np.zeros(rows, dtype=np.int32))
    same = lambda value: pa.DictionaryArray.from_arrays(zeros, pa.array([value]))  # noqa: E731
    table = pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(rows * DIM, np.float32)), DIM),
                      "text": same("x" * 2000), "document": same("a.pdf"), "doc_id": same("0" * 64), "page": zeros,
                      "start": zeros, "end": zeros, "heading_path": pa.array([[]] * rows, pa.list_(pa.string())),
                      "chunk_index": zeros, "tokens": zeros, "document_record": same(""), "document_pages": same("")})
    bomb = tmp_path / "bomb.parquet"
    pq.write_table(table.replace_schema_metadata(meta), bomb, row_group_size=rows, compression="zstd")
    assert bomb.stat().st_size < 100_000 and table.nbytes < decoded_limit(bomb.stat().st_size) < 400 * 2000 * 1000
    target = Collection(tmp_path, "target")
    with pytest.raises(InputError, match="would take more than 256 MB to read"):
        import_collection(target, bomb, {"m": DIM})
    assert not target.exists


def _heading_bomb(path, meta, rows: int, titles: int, title: str, row_groups: int = 1) -> None:
    """An export whose heading paths are ``titles`` copies of one ``title`` a row, stored once (dictionary-coded,
    and read back as plain strings: no Arrow schema in the file)."""
    zeros = pa.array(np.zeros(rows, dtype=np.int32))
    same = lambda value: pa.DictionaryArray.from_arrays(zeros, pa.array([value]))  # noqa: E731
    values = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows * titles, dtype=np.int32)), pa.array([title]))
    headings = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * titles), values)
    table = pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(rows * DIM, np.float32)), DIM),
                      "text": same("x"), "document": same("a.pdf"), "doc_id": same("0" * 64), "page": zeros,
                      "start": zeros, "end": zeros, "heading_path": headings, "chunk_index": zeros, "tokens": zeros,
                      "document_record": same(""), "document_pages": same("")}).replace_schema_metadata(meta)
    with pq.ParquetWriter(path, table.schema, compression="zstd", store_schema=False) as writer:
        for _ in range(row_groups):
            writer.write_table(table)


@pytest.mark.parametrize("rows, titles, title_chars, row_groups, words", [
    (64, 100_000, 100, 1, "more than 16 heading titles a chunk"),  # 640 MB of titles in a few KB
    (1, 1, 20_000_000, 1, "could decode to 305 MB each"),  # one 20 MB title: a batch would hold 64 of it, 16 a row
    (64, 16, 1_000_000, 1, "would take more than 256 MB to read"),  # 1 GB of titles, read a few rows at a time
])
def test_heading_paths_stored_once_are_refused_before_they_are_decoded(tmp_path, source, rows, titles, title_chars,
                                                                     row_groups, words):
    """The heading path is a list column, which Arrow decodes in full whatever the file stores once: 64 rows of one
    stored title decoded to what the titles would be as text before any count saw them. The sizes the file declares
    now bound each batch, and the titles a row; nothing is created."""
    c, _ = source
    meta = pq.read_table(export_collection(c, tmp_path / "good.parquet").file).schema.metadata
    bomb = tmp_path / "bomb.parquet"
    _heading_bomb(bomb, meta, rows, titles, "x" * title_chars, row_groups)
    assert bomb.stat().st_size < 200_000
    target = Collection(tmp_path, "target")
    with pytest.raises(InputError, match=words):
        import_collection(target, bomb, {"m": DIM})
    assert not target.exists


@pytest.mark.parametrize("path", [["x" * 1001], ["t"] * 17, ["ok", None]])
def test_a_heading_path_of_too_many_or_too_long_titles_is_a_row_error(tmp_path, source, path):
    c, _ = source
    good = export_collection(c, tmp_path / "good.parquet").file

    def change(columns):
        columns["heading_path"][3] = path

    bad = _rewrite(good, tmp_path / "bad.parquet", change)
    target = Collection(tmp_path, "target")
    with pytest.raises(InputError, match="Row 3: the heading path is not a list of at most 16 titles"):
        import_collection(target, bad, {"m": DIM})
    assert not target.exists
