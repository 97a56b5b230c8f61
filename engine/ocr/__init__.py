"""OCR back-ends behind one interface, registered by name.

``auto`` (per page: the text layer where it is good, the best local OCR engine where it is not),
``text``, ``tesseract``, ``rapidocr``, ``mistral``, ``deepseek-ocr``, ``hunyuan-ocr``.
"""

from __future__ import annotations

from engine.ocr.base import Availability, OCRBackend, OCRText, PageImage

BACKENDS: dict[str, type[OCRBackend]] = {}


def register(cls: type[OCRBackend]) -> type[OCRBackend]:
    BACKENDS[cls.name] = cls
    return cls


__all__ = ["Availability", "BACKENDS", "OCRBackend", "OCRText", "PageImage", "register"]
