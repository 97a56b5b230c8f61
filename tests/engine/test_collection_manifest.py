"""collection.json of the wrong shape is a CollectionError naming the collection; every listing (CLI,
HTTP, the app's home page) still shows the other collections and marks the broken one;
``check-collection`` reports missing or unreadable segments. Also: a search reads collection.json
once, and every model/variant check goes through one function."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_collection import DIM, _doc

from engine.collection import Collection, list_collections, scan_collections
from engine.errors import CollectionError

ROOT = __import__("conftest").ROOT
WRONG_SHAPES = {
    "a list": [1],
    "a string": "collection",
    "missing key": "drop:model",
    "extra key": "add:colour",
    "wrong type": "set:dim=384x",
    "bool for a number": "set:dim=true",
    "bad document": "set:documents=[1]",
    "segment path": "doc:segment=../../../etc/passwd",
    "doc_id path": "doc:doc_id=../../../../../../tmp/x",  # it names the segment files of a re-ingest or import
    "index path": 'set:indexes={"keyword": "../../../outside/kw"}',  # the keyword index was opened from there
    "ann path": 'set:indexes={"keyword": "keyword-g1", "ann": "/etc/ann.usearch"}',
}


def _good(root, name="good"):
    col = Collection(root, name)
    col.create("model-a", "fp32", DIM, {})
    record, vectors, chunks, pages = _doc("a" * 64, "a.pdf", 3, 1)
    col.add_document(record, vectors, chunks, "model-a", pages=pages)
    return col


def _break(col: Collection, how) -> None:
    path = col.path / "collection.json"
    data = json.loads(path.read_text())
    if not isinstance(how, str) or ":" not in how:
        data = how
    elif how.startswith("drop:"):
        del data[how[5:]]
    elif how.startswith("add:"):
        data[how[4:]] = "blue"
    elif how.startswith("set:"):
        key, value = how[4:].split("=")
        data[key] = json.loads(value) if value[0] in "[t{" else value
    elif how.startswith("doc:"):
        key, value = how[4:].split("=")
        data["documents"][0][key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("how", list(WRONG_SHAPES.values()), ids=list(WRONG_SHAPES))
def test_a_manifest_of_the_wrong_shape_is_a_collection_error(tmp_path, how, monkeypatch):
    _good(tmp_path)
    broken = _good(tmp_path, "broken")
    _break(broken, how)
    with pytest.raises(CollectionError, match="'broken'") as caught:
        Collection(tmp_path, "broken").info()
    assert "unreadable" in caught.value.message and caught.value.hint
    infos, bad = scan_collections(tmp_path)
    assert [i.name for i in infos] == ["good"] and [b.name for b in bad] == ["broken"]
    assert [i.name for i in list_collections(tmp_path)] == ["good"]
    report = Collection(tmp_path, "broken").check()
    assert not report.ok and "'broken'" in report.problems[0]


@pytest.fixture()
def mixed(tmp_path):
    """A data folder with three collections: a good one, one whose manifest has the wrong shape, one
    with a missing segment file."""
    root = tmp_path / "collections"
    _good(root, "good")
    _break(_good(root, "broken"), [1])
    holey = _good(root, "holey")
    record, vectors, chunks, pages = _doc("b" * 64, "b.pdf", 2, 2)
    holey.add_document(record, vectors, chunks, "model-a", pages=pages)
    segment = holey.info().document("b.pdf").segment
    (holey.path / "segments" / f"{segment}.jsonl").unlink()
    return tmp_path


def _cli(data_dir, *args):
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_lists_every_collection_and_marks_the_broken_one(mixed):
    data_dir = mixed
    done = _cli(data_dir, "collections", "--json")
    assert done.returncode == 0, done.stderr
    listed = {c["name"]: c for c in json.loads(done.stdout)}
    assert set(listed) == {"good", "broken", "holey"} and all("documents" in c for c in listed.values())
    assert listed["broken"]["broken"] is True and listed["broken"]["error"]["error"] == "collection_error"
    assert [d["name"] for d in listed["good"]["documents"]] == ["a.pdf"]
    text = _cli(data_dir, "collections")
    assert text.returncode == 0 and "BROKEN  broken" in text.stdout and "good" in text.stdout


def test_check_collection_reports_what_is_missing_and_what_to_do(mixed):
    data_dir = mixed
    ok = _cli(data_dir, "check-collection", "good")
    assert ok.returncode == 0 and "ok, 1 documents, 3 chunks" in ok.stdout
    holey = _cli(data_dir, "check-collection", "holey", "--json")
    assert holey.returncode == 1, holey.stderr
    report = json.loads(holey.stdout)
    assert report["ok"] is False and report["documents"] == 2
    assert len(report["problems"]) == 1 and report["problems"][0].startswith(f"b.pdf (doc_id {'b' * 64}): a file of its segment")
    assert "delete --collection holey" in report["hint"]
    broken = _cli(data_dir, "check-collection", "broken")
    assert broken.returncode == 1 and "BROKEN" in broken.stdout and "what to do:" in broken.stdout
    missing = _cli(data_dir, "check-collection", "nope")
    assert missing.returncode == 2 and "no collection named 'nope'" in missing.stderr
    assert "Traceback" not in ok.stderr + holey.stderr + broken.stderr + missing.stderr


def test_the_home_page_lists_every_collection_and_marks_the_broken_one(mixed, monkeypatch):
    streamlit_testing = pytest.importorskip("streamlit.testing.v1")
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import app
from engine.settings import load_settings
from engine.studio import Studio
app._collections(Studio(load_settings(data_dir={str(mixed)!r})))
"""
    at = streamlit_testing.AppTest.from_string(script, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [str(v) for frame in at.dataframe for v in frame.value["collection"]]
    assert sorted(shown) == ["good", "holey"]
    assert any("**broken** is broken" in w.value for w in at.warning)


class _ManifestReads:
    """Counts real opens of collection.json (an audit hook sees every open(), whoever calls it)."""

    def __init__(self) -> None:
        self.count = 0
        self.active = False
        sys.addaudithook(self._hook)

    def _hook(self, event, args) -> None:
        if self.active and event == "open" and str(args[0]).endswith("collection.json"):
            self.count += 1


READS = _ManifestReads()


def test_a_search_reads_collection_json_once(studio):
    from conftest import shared_data

    from engine.pipeline import ingest, search

    ingest(studio, "reads", shared_data("pdfs", "table_small.pdf"))
    search(studio, "reads", "warm up the session", k=1)
    fresh = type(studio)(studio.settings)  # a new Studio: nothing cached in memory
    # a query reads collection.json once; the first one of a Studio reads it once more, to learn which store
    # (embedded or Qdrant) the collection lives in
    for who, reads in ((studio, 1), (fresh, 2), (fresh, 1)):
        READS.count, READS.active = 0, True
        try:
            hits = search(who, "reads", "boiling point of water", k=2).hits
        finally:
            READS.active = False
        assert hits and READS.count == reads, (reads, READS.count)


def test_every_model_and_variant_check_is_the_one_function():
    """The four places that compared models now call collection_format.require_same_model."""
    import inspect

    from engine import collection as index
    from engine import pipeline

    for module in (index, pipeline):
        source = inspect.getsource(module)
        assert "!= info.model" not in source and "require_same_model(" in source
