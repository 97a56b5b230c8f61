"""OCR and collection routes over real HTTP: upload a real PDF, get its pages; ingest into a
collection, search it, delete; bad files and oversized uploads get clear 4xx answers."""

from __future__ import annotations

import httpx
import pymupdf
import pytest
from conftest import shared_data
from server_harness import serve, wait_ready

from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio


@pytest.fixture(scope="module")
def server(default_model, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("http-docs")
    (data_dir / "models").mkdir()
    (data_dir / "models" / default_model.name).symlink_to(default_model)
    studio = Studio(load_settings(data_dir=data_dir, max_upload_mb=2))
    with serve(create_app(studio, ApiSettings())) as base:
        wait_ready(base)
        yield base


def _post_file(url, path, field="file", **form):
    with open(path, "rb") as handle:
        return httpx.post(url, files={field: (path.name, handle.read(), "application/pdf")}, data=form, timeout=300)


def test_ocr_returns_page_texts(server):
    pdf = shared_data("pdfs", "encrypted_rc4_dmca_18p.pdf")
    answer = _post_file(f"{server}/v1/ocr", pdf, engine="text", pages="2-3")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["page_count"] == 18 and [p["number"] for p in body["pages"]] == [2, 3]
    with pymupdf.open(pdf) as doc:
        expected_words = doc[1].get_text().split()[:5]
    assert all(word in body["pages"][0]["text"] for word in expected_words)
    assert body["pages"][0]["source"] == "text" and not body["pages"][0]["ocr_used"]
    assert _post_file(f"{server}/ocr", pdf, engine="text", pages="1").status_code == 200  # the short path too


def test_ocr_bad_files_are_clear_4xx(server):
    bad = _post_file(f"{server}/v1/ocr", shared_data("pdfs", "not_a_pdf_oops.pdf"))
    assert bad.status_code == 422 and "not a PDF" in bad.json()["error"]["message"]
    locked = _post_file(f"{server}/v1/ocr", shared_data("pdfs", "encrypted_user_pw_aes256.pdf"))
    assert locked.status_code == 422 and "password" in locked.json()["error"]["message"]
    opened = _post_file(f"{server}/v1/ocr", shared_data("pdfs", "encrypted_user_pw_aes256.pdf"), password="usersecret")
    assert opened.status_code == 200 and "Hello" in opened.json()["pages"][0]["text"]
    too_big = _post_file(f"{server}/v1/ocr", shared_data("pdfs", "book_free_culture_352p.pdf"))
    assert too_big.status_code == 413
    unknown = _post_file(f"{server}/v1/ocr", shared_data("pdfs", "table_small.pdf"), engine="magic")
    assert unknown.status_code == 400 and "Unknown OCR engine" in unknown.json()["error"]["message"]
    assert unknown.json()["error"]["param"] == "engine"
    text = httpx.post(f"{server}/v1/ocr", data={"file": "abc"}, files={"x": ("x", b"", "text/plain")}, timeout=60)
    assert text.status_code == 400 and text.json()["error"]["param"] == "file", text.text
    assert "send a file in this field" in text.json()["error"]["message"] and "UploadFile" not in text.text
    assert locked.json()["error"]["param"] == "password"
    for pages in ("abc", "0", "3-1", "9"):
        answer = _post_file(f"{server}/v1/ocr", shared_data("pdfs", "table_small.pdf"), engine="text", pages=pages)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "pages", answer.text


def test_collection_lifecycle(server):
    pdf = shared_data("pdfs", "encrypted_rc4_dmca_18p.pdf")
    with open(pdf, "rb") as handle:
        data = handle.read()
    files = [("files", (pdf.name, data, "application/pdf")),
             ("files", ("oops.pdf", b"oops\n", "application/pdf"))]
    ingested = httpx.post(f"{server}/v1/collections/dmca/documents", files=files, timeout=600)
    assert ingested.status_code == 200, ingested.text
    body = ingested.json()
    assert body["ingested"] == 1 and body["failed"] == 1
    assert body["results"][1]["error"]["error"] == "corrupt_document"
    with pymupdf.open(pdf) as doc:
        text = " ".join(doc[6].get_text().split())
    sentence = max(text.split(". "), key=len)[:250]
    found = httpx.post(f"{server}/v1/collections/dmca/search", json={"query": sentence, "k": 3}, timeout=60).json()
    assert found["hits"][0]["page"] == 7 and found["hits"][0]["document"] == pdf.name and found["seconds"]["total"] > 0
    listing = httpx.get(f"{server}/v1/collections").json()["data"]
    assert [c["name"] for c in listing] == ["dmca"] and listing[0]["documents"][0]["pages"] == 18
    assert httpx.delete(f"{server}/v1/collections/dmca/documents/{pdf.name}").json()["deleted"] == pdf.name
    missing = httpx.delete(f"{server}/v1/collections/dmca/documents/{pdf.name}")  # it is gone now: a 404, not a 400
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found", missing.text
    assert httpx.post(f"{server}/v1/collections/dmca/search", json={"query": "copyright"},
                      timeout=60).json()["hits"] == []
    assert httpx.delete(f"{server}/v1/collections/dmca").status_code == 200
    missing = httpx.post(f"{server}/v1/collections/dmca/search", json={"query": "copyright"})
    assert missing.status_code == 404 and "no collection" in missing.json()["error"]["message"]
    empty = httpx.post(f"{server}/v1/collections/x/search", json={"query": ""})
    assert empty.status_code in (400, 422)


def test_ingest_form_takes_the_clis_options_and_refuses_unknown_fields(server):
    """A misspelt field (chunk_sise) or a bad OCR engine was ignored or failed each file with a 200; now they are
    400s naming the field and nothing is created. language, headings, store and variant set a new collection as
    the CLI's options do."""
    pdf = shared_data("pdfs", "table_small.pdf")
    url = f"{server}/v1/collections/%s/documents"
    for form, field in (({"chunk_sise": "16"}, "chunk_sise"), ({"ocr": "bogus"}, "ocr"),
                        ({"chunk_size": "64", "chunk_overlap": "64"}, "chunk_overlap"), ({"language": "xx"}, "language")):
        answer = _post_file(url % "formcheck", pdf, field="files", **form)
        assert answer.status_code == 400, (form, answer.text)
        assert answer.json()["error"]["param"] == field, answer.text
    # a model that cannot run is wrong for every file of a new collection: one 4xx, not a 200 with each file failed
    for form, status in (({"model": "nope"}, 404), ({"variant": "int4"}, 400)):
        answer = httpx.post(url % "formcheck", data=form, timeout=60, files=[
            ("files", ("a.pdf", pdf.read_bytes(), "application/pdf")), ("files", ("b.pdf", b"%PDF-1.4", "application/pdf"))])
        assert answer.status_code == status, (form, answer.text)
    assert httpx.get(f"{server}/v1/collections/formcheck").status_code == 404  # nothing was created
    answer = _post_file(url % "formcheck", pdf, field="files", language="de", headings="true", store="embedded",
                        variant="fp32")
    assert answer.status_code == 200 and answer.json()["ingested"] == 1, answer.text
    created = httpx.get(f"{server}/v1/collections/formcheck").json()
    assert (created["variant"], created["language"], created["store"]) == ("fp32", "de", "embedded"), created
    assert [d["name"] for d in created["documents"]] == ["table_small.pdf"]
    # a model or variant not the collection's is wrong for every file: a 409 before any file is read (it was a 200
    # with each file failed)
    for form, code in (({"model": "all-mpnet-base-v2"}, "model_mismatch"), ({"variant": "int8"}, "variant_mismatch")):
        answer = _post_file(url % "formcheck", pdf, field="files", force="true", **form)
        assert answer.status_code == 409 and answer.json()["error"]["code"] == code, answer.text
        assert answer.json()["error"]["param"] == next(iter(form)) and "--" not in answer.json()["error"]["hint"]
    ocr = _post_file(f"{server}/v1/ocr", pdf, engine="text", pagez="1")
    assert ocr.status_code == 400 and ocr.json()["error"]["param"] == "pagez", ocr.text
