"""The page records shared by documents, OCR back-ends, chunking and the pipeline: ``Page`` (a page's
text after extraction or OCR) and ``PageImage`` (a page rendered for an OCR engine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """One page of a document after text extraction and/or OCR.

    ``text`` is the page text the chunker splits and every character offset refers to.
    """

    number: int  # 1-based
    text: str
    source: str  # "text" (the PDF's text layer) or the OCR engine's name ("tesseract", "mistral", ...)
    ocr_used: bool = False
    degraded: bool = False  # OCR hit its token cap or a repetition loop, or the text layer is garbled
    width: float = 0.0  # points (1/72 inch); pixels for images
    height: float = 0.0
    quality: float = 1.0  # 0..1 text-layer quality score that decided whether OCR was needed
    seconds: float = 0.0  # extraction or OCR time for this page
    notes: tuple[str, ...] = ()
    # lines that run through the document as heads or footers, kept here, on the first page they stand on, so their
    # words stay searchable once: text, never a heading (a running head's first copy made "“PROPERTY” 87" the
    # heading of 326 chunks of book_free_culture_352p.pdf)
    running_kept: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict) -> Page:
        """A page as stored (JSON: lists for tuples; pages stored before ``running_kept`` lack it)."""
        return cls(**{**data, "notes": tuple(data.get("notes", ())),
                      "running_kept": tuple(data.get("running_kept", ()))})


@dataclass(frozen=True)
class PageImage:
    """A page rendered for OCR (PNG bytes)."""

    number: int  # 1-based page number in the document
    png: bytes
    width_px: int
    height_px: int
    dpi: int
