"""The OCR back-end interface: every engine (local, remote API, GPU model) implements this."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from engine.page_records import PageImage

__all__ = ["Availability", "OCRBackend", "OCRText", "PageImage"]


@dataclass(frozen=True)
class Availability:
    engine: str
    available: bool
    reason: str = ""  # why not, in words a user understands
    hint: str = ""  # what to install or configure


@dataclass(frozen=True)
class OCRText:
    text: str
    seconds: float
    degraded: bool = False  # token cap or repetition guard tripped, or the engine reported low confidence
    confidence: float | None = None
    notes: tuple[str, ...] = ()


class OCRBackend(ABC):
    """One OCR engine. Instances are cheap to create; heavy models load lazily on first use."""

    name: ClassVar[str]
    local: ClassVar[bool] = True  # runs on this machine without network or GPU
    # recognize() may run on several pages at once, in threads (a CPU engine whose work happens outside
    # the GIL: a subprocess, ONNX Runtime); engine.page_extraction then uses one worker per usable core
    parallel: ClassVar[bool] = False

    @abstractmethod
    def availability(self) -> Availability:
        """Can this engine run here, and if not, why and how to fix it (fast, no heavy loading)."""

    @abstractmethod
    def recognize(self, image: PageImage) -> OCRText:
        """Text of one rendered page, in reading order."""

    def use_workers(self, workers: int) -> None:
        """Called before pages are recognised ``workers`` at a time, so an engine can size its own threads."""
        return None

    def recognize_pdf(self, pdf: bytes, pages: list[int]) -> dict[int, OCRText] | None:
        """Engines that take whole PDFs (Mistral) override this; None means: render pages and call recognize."""
        return None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)
