"""Background ingest jobs of the Studio (engine/jobs.py): per-file results, progress snapshots, one running job
per collection, and results that outlive the caller that started them."""

from __future__ import annotations

import pytest
from conftest import shared_data

from engine.errors import InputError
from engine.pipeline import IngestOptions


def _upload(name: str) -> tuple[str, bytes]:
    return name, shared_data("pdfs", name).read_bytes()


def test_a_job_ingests_each_file_and_reports_the_bad_one(studio):
    state = studio.jobs.start("jobs-a", [_upload("table_small.pdf"), _upload("not_a_pdf_oops.pdf")], IngestOptions(),
                              extra={"password": None})
    assert state.running and state.files == ("table_small.pdf", "not_a_pdf_oops.pdf")
    final = studio.jobs.wait(state.id, timeout=300)
    assert final.status == "done" and final.fraction == 1.0 and final.finished_at is not None
    good, bad = final.results
    assert good.ok and good.pages == 1 and not bad.ok and "not a PDF" in bad.error["message"]
    assert final.ok_count == 1 and final.failed_count == 1
    assert "ingested 1 of 2 file(s) into 'jobs-a'" in final.describe()
    assert studio.jobs.latest("jobs-a").id == state.id and studio.jobs.running() == []
    from engine.pipeline import collection

    assert [d.name for d in collection(studio, "jobs-a").info().documents] == ["table_small.pdf"]


def test_one_running_job_per_collection(studio):
    first = studio.jobs.start("jobs-b", [_upload("paper_naacl06_2col.pdf")], IngestOptions())
    try:
        with pytest.raises(InputError, match="still running"):
            studio.jobs.start("jobs-b", [_upload("table_small.pdf")], IngestOptions())
        other = studio.jobs.start("jobs-c", [_upload("table_small.pdf")], IngestOptions())  # another collection: fine
        assert studio.jobs.wait(other.id, timeout=300).status == "done"
    finally:
        assert studio.jobs.wait(first.id, timeout=300).status == "done"
    with pytest.raises(InputError, match="not a valid collection name"):
        studio.jobs.start(".x", [_upload("table_small.pdf")], IngestOptions())
    with pytest.raises(InputError, match="no file"):
        studio.jobs.start("jobs-b", [], IngestOptions())


def test_a_job_whose_thread_cannot_start_fails_clearly_and_frees_its_collection(studio, monkeypatch):
    import threading

    from engine.errors import ServiceBusyError

    real_start = threading.Thread.start

    def start(thread):
        if thread.name.startswith("ingest-"):
            raise RuntimeError("can't start new thread")
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(ServiceBusyError, match="could not start") as raised:
        studio.jobs.start("jobs-d", [_upload("table_small.pdf")], IngestOptions())
    assert "can't start new thread" in raised.value.message
    assert studio.jobs.running() == [] and studio.jobs.latest("jobs-d") is None  # not left "running" for good
    monkeypatch.setattr(threading.Thread, "start", real_start)
    state = studio.jobs.start("jobs-d", [_upload("table_small.pdf")], IngestOptions())  # the collection is free
    assert studio.jobs.wait(state.id, timeout=300).status == "done"
