"""``text``: the PDF's own text layer, no OCR.

The text layer is read by engine.documents (reading order, quality verdict) and engine.ocr.extract
uses it directly; this back-end exists so that ``text`` is listed, selectable and always available
like the other engines. Given a bare image it has nothing to read and says so.
"""

from __future__ import annotations

from engine.ocr import register
from engine.ocr.base import Availability, OCRBackend, OCRText, PageImage


@register
class TextLayerBackend(OCRBackend):
    name = "text"
    local = True

    def availability(self) -> Availability:
        return Availability(self.name, True)

    def recognize(self, image: PageImage) -> OCRText:
        return OCRText("", 0.0, notes=("the text engine reads only a PDF's text layer; an image has none",))
