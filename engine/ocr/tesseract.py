"""``tesseract``: Tesseract 5 (Debian ``tesseract-ocr`` + language packs, Homebrew on macOS), on CPU.

The ``tesseract`` program is run once per page (PNG on stdin, TSV on stdout) rather than through
pytesseract, because pytesseract cannot give the child its own environment: with OpenMP limited
to one thread (``OMP_THREAD_LIMIT=1``) a 170-dpi page took 3.4 s instead of 8.8 s on the 2-core
machine (measured; Tesseract's OpenMP threads fight over shared cores). One TSV run gives both the
text and the word confidences.

Settings (environment): STUDIO_OCR_LANGUAGES ("eng", "eng+deu", ...), STUDIO_TESSERACT_CMD,
STUDIO_TESSERACT_PSM (3 = automatic layout), STUDIO_TESSERACT_THREADS, STUDIO_OCR_TIMEOUT_S.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import subprocess
import time

from engine.errors import ConfigError, OCRError, OCRUnavailableError
from engine.ocr import register
from engine.ocr.base import Availability, OCRBackend, OCRText, PageImage
from engine.settings import load_settings

log = logging.getLogger(__name__)

_LANGUAGES = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*\Z")
LOW_CONFIDENCE = 0.6


def install_hint(languages: str) -> str:
    packages = " ".join(f"tesseract-ocr-{code.lower().replace('_', '-')}" for code in languages.split("+"))
    return (f"Debian/Ubuntu: apt-get install tesseract-ocr {packages}; macOS: brew install tesseract tesseract-lang; "
            "or set STUDIO_TESSERACT_CMD to the tesseract program")


def parse_version(output: str) -> tuple[int, ...] | None:
    match = re.search(r"tesseract\s+v?(\d+)\.(\d+)(?:\.(\d+))?", output, re.IGNORECASE)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def parse_languages(output: str) -> set[str]:
    """`tesseract --list-langs` prints a header line and then one language code per line."""
    return {line.strip() for line in output.splitlines()[1:] if line.strip() and " " not in line.strip()}


def tsv_to_text(tsv: str) -> tuple[str, float | None]:
    """Text (words joined by spaces, lines by newlines, paragraphs by blank lines) and mean word confidence 0..1.

    Tesseract's TSV has one row per word (level 5) with block, paragraph and line numbers in reading order.
    """
    out: list[str] = []
    last_par = last_line = None
    weighted = weight = 0.0
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        word = (row.get("text") or "").strip()
        if not word:
            continue
        par = (row["page_num"], row["block_num"], row["par_num"])
        line = (*par, row["line_num"])
        if last_line is not None:
            out.append(" " if line == last_line else "\n" if par == last_par else "\n\n")
        out.append(word)
        last_par, last_line = par, line
        confidence = float(row.get("conf") or -1)
        if confidence >= 0:
            weighted += confidence * len(word)
            weight += len(word)
    return "".join(out), (round(weighted / weight / 100, 4) if weight else None)


@register
class TesseractBackend(OCRBackend):
    name = "tesseract"
    local = True
    parallel = True  # one tesseract process per page, each with OMP_THREAD_LIMIT (1 by default)

    def __init__(self, languages: str | None = None, cmd: str | None = None, psm: int | None = None,
                 threads: int | None = None, timeout_s: float | None = None) -> None:
        settings = load_settings()
        self.languages = (languages or settings.ocr_languages).strip()
        if not _LANGUAGES.match(self.languages):
            raise ConfigError(f"'{self.languages}' is not a Tesseract language list.",
                              "use codes joined with '+', e.g. eng or eng+deu (see tesseract --list-langs)")
        self.cmd = cmd or settings.tesseract_cmd
        self.psm = psm if psm is not None else settings.tesseract_psm
        self.threads = threads or settings.tesseract_threads
        self.timeout_s = timeout_s or settings.ocr_timeout_s

    def _run(self, args: list[str], timeout: float, data: bytes | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_THREAD_LIMIT": str(self.threads)}
        return subprocess.run([self.cmd, *args], input=data, capture_output=True, timeout=timeout, env=env, check=False)

    def availability(self) -> Availability:
        hint = install_hint(self.languages)
        if shutil.which(self.cmd) is None:
            return Availability(self.name, False, f"the tesseract program ('{self.cmd}') was not found", hint)
        try:
            version_run = self._run(["--version"], 15)
            langs_run = self._run(["--list-langs"], 15)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Availability(self.name, False, f"the tesseract program could not be run: {exc}", hint)
        version = parse_version(version_run.stdout.decode(errors="replace") + version_run.stderr.decode(errors="replace"))
        if version is None or version[0] < 4:
            found = ".".join(map(str, version)) if version else "an unknown version"
            return Availability(self.name, False, f"Tesseract 4 or newer is needed; found {found}", hint)
        installed = parse_languages(langs_run.stdout.decode(errors="replace"))
        missing = [code for code in self.languages.split("+") if code not in installed]
        if missing:
            return Availability(
                self.name, False,
                f"Tesseract has no language data for {', '.join(missing)} (installed: {', '.join(sorted(installed)) or 'none'})",
                install_hint("+".join(missing)),
            )
        return Availability(self.name, True)

    def recognize(self, image: PageImage) -> OCRText:
        started = time.perf_counter()
        args = ["stdin", "stdout", "-l", self.languages, "--psm", str(self.psm), "--dpi", str(image.dpi), "tsv"]
        try:
            run = self._run(args, self.timeout_s, image.png)
        except FileNotFoundError:
            raise OCRUnavailableError(f"The tesseract program ('{self.cmd}') was not found.",
                                      install_hint(self.languages)) from None
        except subprocess.TimeoutExpired:
            raise OCRError(f"Tesseract took longer than {self.timeout_s:.0f} s on page {image.number}.",
                           "lower STUDIO_RENDER_DPI or raise STUDIO_OCR_TIMEOUT_S") from None
        if run.returncode != 0:
            detail = run.stderr.decode(errors="replace").strip().splitlines()
            raise OCRError(f"Tesseract failed on page {image.number}: {detail[-1] if detail else 'exit ' + str(run.returncode)}",
                           "check the installation with: tesseract --list-langs")
        text, confidence = tsv_to_text(run.stdout.decode("utf-8", errors="replace"))
        notes: tuple[str, ...] = (f"tesseract {self.languages}, psm {self.psm}, {image.dpi} dpi",)
        if confidence is not None and confidence < LOW_CONFIDENCE:
            notes += (f"low OCR confidence ({confidence:.0%})",)
        return OCRText(text=text, seconds=round(time.perf_counter() - started, 4), confidence=confidence, notes=notes)
