"""A fake of Mistral's OCR API: ``POST /v1/ocr`` as api.mistral.ai speaks it (notes: ocr-backends §1).

It checks the bearer key, validates the body the way the API does (422 with a ``detail`` list),
enforces document limits (pages, bytes) so a client that does not split is caught, and answers
with one ``OCRPageObject`` per page. Having no OCR model, it answers a PDF page with that page's
text layer (so tests can check page numbering) plus an image link, and an image with its size.
"""

from __future__ import annotations

import base64
import binascii
import io

import pymupdf
from PIL import Image

from servers.base import FakeServer, Reply, Request

PDF_PREFIX = "data:application/pdf;base64,"
PNG_PREFIX = "data:image/png;base64,"


def page_markdown(page_text: str, index: int) -> str:
    return f"{page_text.strip()}\n\n![img-{index}.jpeg](img-{index}.jpeg)\n"


class FakeMistral(FakeServer):
    def __init__(self, api_key: str = "test-key", max_pages: int = 1000, max_bytes: int = 50_000_000) -> None:
        super().__init__()
        self.api_key, self.max_pages, self.max_bytes = api_key, max_pages, max_bytes

    def documents(self) -> list[bytes]:
        """The PDF or image bytes of every OCR request received, in order."""
        out = []
        for request in self.requests_to("/v1/ocr"):
            document = request.json()["document"]
            uri = document.get("document_url") or document.get("image_url")
            uri = uri["url"] if isinstance(uri, dict) else uri
            out.append(base64.b64decode(uri.split(",", 1)[1]))
        return out

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/ocr":
            return Reply(404, {"detail": "Not Found"})
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(401, {"message": "Unauthorized", "request_id": "fake"})
        try:
            body = request.json()
        except ValueError:
            return invalid("body", "Invalid JSON")
        if not isinstance(body, dict) or not body.get("model"):
            return invalid("model", "Field required")
        document = body.get("document") or {}
        kind = document.get("type")
        if kind == "document_url":
            return self._pdf(body, document.get("document_url", ""))
        if kind == "image_url":
            url = document.get("image_url")
            return self._image(body, url["url"] if isinstance(url, dict) else str(url or ""))
        return invalid("document", f"Input tag '{kind}' found using 'type' does not match any of the expected tags")

    def _pdf(self, body: dict, uri: str) -> Reply:
        if not uri.startswith(PDF_PREFIX):
            return invalid("document_url", "expected a URL or a data:application/pdf;base64 URI")
        try:
            data = base64.b64decode(uri[len(PDF_PREFIX):], validate=True)
        except binascii.Error:
            return invalid("document_url", "invalid base64")
        if len(data) > self.max_bytes:
            return Reply(400, {"message": f"Document is too large: {len(data)} bytes (max {self.max_bytes})"})
        with pymupdf.open(stream=data, filetype="pdf") as pdf:
            if pdf.page_count > self.max_pages:
                return Reply(400, {"message": f"Document has {pdf.page_count} pages (max {self.max_pages})"})
            indices = body.get("pages")
            if indices is None:
                indices = list(range(pdf.page_count))
            if any(not isinstance(i, int) or not 0 <= i < pdf.page_count for i in indices):
                return invalid("pages", f"page index out of range for a {pdf.page_count}-page document")
            pages = [self._page(i, page_markdown(pdf[i].get_text(), i), pdf[i].rect.width, pdf[i].rect.height) for i in indices]
        return Reply(200, response(body["model"], pages, len(data)))

    def _image(self, body: dict, uri: str) -> Reply:
        if not uri.startswith(PNG_PREFIX):
            return invalid("image_url", "expected a data:image/png;base64 URI")
        data = base64.b64decode(uri[len(PNG_PREFIX):])
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        markdown = f"# Scanned page\n\nAn image of {width}x{height} pixels."
        return Reply(200, response(body["model"], [self._page(0, markdown, width, height)], len(data)))

    @staticmethod
    def _page(index: int, markdown: str, width: float, height: float) -> dict:
        dimensions = {"dpi": 200, "height": int(height), "width": int(width)}
        return {"index": index, "markdown": markdown, "images": [], "dimensions": dimensions}


def response(model: str, pages: list[dict], size: int) -> dict:
    return {"pages": pages, "model": model, "usage_info": {"pages_processed": len(pages), "doc_size_bytes": size}}


def invalid(field: str, message: str) -> Reply:
    return Reply(422, {"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]})
