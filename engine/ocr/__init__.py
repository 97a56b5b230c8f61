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


# --- lookup: load the back-end modules, build one by name, list them --------------------------------
# Back-end modules register themselves on import; a module that is not there (yet) is skipped.
BACKEND_MODULES = (
    "engine.ocr.tesseract",
    "engine.ocr.rapidocr",
    "engine.ocr.mistral",
    "engine.ocr.deepseek",
    "engine.ocr.hunyuan",
)


def load_backends() -> dict[str, type[OCRBackend]]:
    import importlib
    import logging

    for module in BACKEND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                logging.getLogger(__name__).warning("OCR back-end %s not loaded: %s", module, exc)
    return BACKENDS


def get_backend(name: str, **options: object) -> OCRBackend:
    """A back-end instance by name; options go to its constructor (e.g. languages="eng+deu" for tesseract)."""
    from engine.errors import InputError

    backends = load_backends()
    if name not in backends:
        known = ", ".join(["auto", "text", *sorted(backends)])
        raise InputError(f"Unknown OCR engine '{name}'.", f"choose one of: {known}", param="engine")
    try:
        return backends[name](**options)
    except TypeError as exc:
        raise InputError(f"Invalid options for the OCR engine '{name}': {exc}", "check the engine's options") from None


def list_engines() -> list[Availability]:
    """Every engine, ``auto`` first, with whether it can run here and, if not, why and how to fix it."""
    from engine.page_extraction import list_engines as _list_engines

    return _list_engines()
