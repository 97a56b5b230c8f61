"""``rapidocr``: RapidOCR 3.x on ONNX Runtime with the PP-OCRv6 models bundled in its wheel.

RapidOCR resolves any model it does not find through a table of ModelScope URLs and downloads it on
first use. The studio never lets it: the three bundled model files are located in the installed
package and passed as explicit paths (the recognition model carries its own character table), so
RapidOCR's download branch is never reached. If a wheel lacks one of them, the engine reports
itself unavailable instead of fetching anything.

PP-OCRv6 small reads Chinese, Japanese, English and ~46 Latin-script languages; not Cyrillic,
Arabic or Korean. Settings: STUDIO_RAPIDOCR_THREADS (ONNX Runtime intra-op threads),
STUDIO_RAPIDOCR_TEXT_SCORE (drop pieces recognised with a lower score).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from pathlib import Path

from engine.errors import OCRError, OCRUnavailableError
from engine.layout import layout_text
from engine.ocr import register
from engine.ocr.base import Availability, OCRBackend, OCRText, PageImage, usable_cores
from engine.settings import load_settings

log = logging.getLogger(__name__)

# The models rapidocr 3.10's wheel ships (config.yaml defaults: PP-OCRv6 small det/rec, PP-OCRv4 mobile cls).
BUNDLED_MODELS = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
INSTALL_HINT = "pip install rapidocr==3.10.0 onnxruntime (the wheel bundles the PP-OCRv6 small models)"


def package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (availability must stay cheap)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_model_paths() -> tuple[dict[str, Path], list[str]]:
    """({section: model path}, [missing file names]) for the models in the installed rapidocr wheel."""
    root = package_dir("rapidocr")
    models = (root / "models") if root else Path("/nonexistent")
    paths = {section: models / file for section, file in BUNDLED_MODELS.items()}
    return paths, [p.name for p in paths.values() if not p.is_file()]


Box = tuple[float, float, float, float]
# A gap wider than this many line heights between two words splits a detected line into pieces. RapidOCR's
# detector sometimes merges lines of both columns into one box; measured on a 170-dpi two-column paper,
# gaps between words of one column have a median of 0.31 line heights (justified lines up to ~0.8) and the
# column gutter inside merged boxes 0.9-1.5: 0.7 splits those lines (page CER 66 % -> 2.7 %).
SPLIT_GAP = 0.7


def rect(quad) -> Box:
    xs = [float(p[0]) for p in quad]
    ys = [float(p[1]) for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def split_line(text: str, box: Box, words: list[tuple[str, Box]], gap: float = SPLIT_GAP) -> list[tuple[Box, str]]:
    """Cut one recognised line where its words are far apart; each piece keeps its slice of the line text.

    ``words`` are the line's word (or, for CJK, character) boxes in order; vertical lines are kept whole.
    """
    x0, y0, x1, y1 = box
    height = y1 - y0
    if not words or height > 1.5 * (x1 - x0):
        return [(box, text)]
    spans: list[tuple[int, int, float, float]] = []  # text start, text end, x0, x1
    position = 0
    for content, (wx0, _, wx1, _) in words:
        at = text.find(content, position)
        if at < 0:  # the words do not spell the line (should not happen): keep it whole
            return [(box, text)]
        spans.append((at, at + len(content), wx0, wx1))
        position = at + len(content)
    pieces: list[tuple[Box, str]] = []
    start, piece_x0 = 0, spans[0][2]
    for previous, following in zip(spans, spans[1:]):
        if following[2] - previous[3] > gap * height:
            pieces.append(((piece_x0, y0, previous[3], y1), text[start:previous[1]].strip()))
            start, piece_x0 = following[0], following[2]
    pieces.append(((piece_x0, y0, spans[-1][3], y1), text[start:].strip()))
    return [piece for piece in pieces if piece[1]]


_ENGINES: dict[tuple, object] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(threads: int | None, text_score: float):
    """One RapidOCR instance per configuration and thread (pages are recognised in parallel threads and
    RapidOCR keeps per-call state on itself); it loads three ONNX sessions on first use."""
    key = (threads, text_score, threading.get_ident())
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            paths, missing = bundled_model_paths()
            if missing:
                raise OCRUnavailableError(f"RapidOCR's bundled models are missing: {', '.join(missing)}.", INSTALL_HINT)
            from rapidocr import RapidOCR

            params: dict[str, object] = {f"{section}.model_path": str(path) for section, path in paths.items()}
            params["Global.log_level"] = "warning"
            params["Global.text_score"] = text_score
            if threads:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
            _ENGINES[key] = RapidOCR(params=params)
        return _ENGINES[key]


@register
class RapidOCRBackend(OCRBackend):
    name = "rapidocr"
    local = True
    parallel = True  # ONNX Runtime runs outside the GIL; one engine per worker thread

    def __init__(self, threads: int | None = None, text_score: float | None = None) -> None:
        settings = load_settings()
        self.threads = threads or settings.rapidocr_threads
        self.text_score = settings.rapidocr_text_score if text_score is None else text_score

    def use_workers(self, workers: int) -> None:
        """Several pages at once: split the cores between them instead of every page asking ORT for all of them."""
        if workers > 1 and self.threads is None:
            self.threads = max(1, usable_cores() // workers)

    def availability(self) -> Availability:
        for module in ("rapidocr", "onnxruntime", "cv2"):
            if package_dir(module) is None:
                return Availability(self.name, False, f"the Python package '{module}' is not installed", INSTALL_HINT)
        _, missing = bundled_model_paths()
        if missing:
            return Availability(
                self.name, False,
                f"the installed rapidocr lacks its bundled models ({', '.join(missing)}); the studio does not let it "
                "download models at run time",
                INSTALL_HINT,
            )
        return Availability(self.name, True)

    def recognize(self, image: PageImage) -> OCRText:
        started = time.perf_counter()
        engine = _engine(self.threads, self.text_score)
        try:
            result = engine(image.png, return_word_box=True)
        except Exception as exc:  # RapidOCR raises plain exceptions of its own (image loading, ONNX Runtime)
            raise OCRError(f"RapidOCR failed on page {image.number}: {exc}",
                           "the page image could not be processed; try another engine") from None
        if result.boxes is None or not result.txts:
            return OCRText("", round(time.perf_counter() - started, 4), notes=("rapidocr found no text",))
        texts = list(result.txts)
        words = result.word_results if len(result.word_results) == len(texts) else [()] * len(texts)
        pieces: list[tuple[Box, str]] = []
        for quad, line, line_words in zip(result.boxes, texts, words):
            boxes_of_words = [(str(w[0]), rect(w[2])) for w in line_words if w and w[2] is not None]
            pieces += split_line(line, rect(quad), boxes_of_words)
        text = layout_text([p[0] for p in pieces], [p[1] for p in pieces], float(image.width_px))
        lengths = [max(1, len(t)) for t in texts]
        confidence = round(sum(float(s) * n for s, n in zip(result.scores, lengths)) / sum(lengths), 4)
        return OCRText(text=text, seconds=round(time.perf_counter() - started, 4), confidence=confidence,
                       notes=(f"rapidocr PP-OCRv6 small, {image.dpi} dpi",))
