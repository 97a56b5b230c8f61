"""The OCR benchmark: pure scoring functions, scanned copies, and one small real run through the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import shared_data

from engine.documents import Limits, open_document
from engine.measure.ocr import (
    PageScore,
    cer,
    dominant_script,
    edit_distance,
    make_scan,
    markdown,
    missed_characters,
    normalize,
    pick_pages,
    reference_scripts,
    score_page,
    script_edits,
    script_of,
    summarize,
    tesseract_languages,
)


# --- normalisation and CER ---------------------------------------------------------------------------------
def test_normalize_folds_ligatures_whitespace_and_cjk_spaces():
    assert normalize("  ﬁne\r\n\tline  two ") == "fine line two"
    assert normalize("東京 タワー は 高い。 Tokyo  Tower") == "東京タワーは高い。Tokyo Tower"
    assert normalize("ＡＢＣ") == "ABC"  # full-width forms (NFKC)


def test_cer_counts_substitutions_deletions_insertions():
    assert cer("abcd", "abcd") == 0.0
    assert cer("abcd", "abxd") == 0.25  # one substitution
    assert cer("abcd", "abd") == 0.25  # one deletion
    assert cer("abcd", "abcde") == 0.25  # one insertion
    assert cer("ab", "abcdef") == 2.0  # insertions can push CER above 1
    assert cer("", "") == 0.0 and cer("", "x") == 1.0
    assert edit_distance("kitten".split(), "sitting".split()) == 1  # word level: one word substituted


def test_scripts_of_characters():
    assert [script_of(c) for c in "aЖ中かΩ1 ."] == ["Latin", "Cyrillic", "CJK", "CJK", "Greek", None, None, None]
    assert script_of("م") == "Arabic" and script_of("ก") == "Thai" and script_of("한") == "Hangul"
    # digits and punctuation take the script of the letter before them; leading ones that of the first letter
    assert reference_scripts("12 ab, Жя.") == ["Latin"] * 7 + ["Cyrillic"] * 3
    assert dominant_script("Привет, world") == "Cyrillic"


def test_edits_are_charged_to_the_script_of_the_reference_character():
    counts = script_edits("Hello Привет", "Hello Пр1вет")
    assert counts == {"Latin": (0, 6), "Cyrillic": (1, 6)}
    counts = script_edits("abc 中文", "abc 中")  # a lost CJK character
    assert counts["CJK"] == (1, 2) and counts["Latin"] == (0, 4)


def test_missed_characters_ignore_order():
    assert missed_characters("left right", "right left") == 0
    assert cer(normalize("left right"), normalize("right left")) > 0.5
    assert missed_characters("abc", "ab") == 1


def test_score_page_and_summaries():
    a = score_page("a.pdf", 1, "tess", "Hello world. Привет мир", "Hello world. Привет мир", 2.0)
    b = score_page("b.pdf", 3, "tess", "One two three four", "One tw0 three", 1.0)
    failed = PageScore("c.pdf", 1, "tess", "Latin", 0, 0, 0, 0, 0, 0, 0, 0, 0.1, error="boom")
    assert a.cer == 0.0 and a.scripts["Cyrillic"] == (0, 10)
    assert b.edits == 6 and b.word_edits == 2
    rows = {(r.engine, r.script): r for r in summarize([a, b, failed])}
    everything = rows[("tess", "all")]
    assert everything.pages == 2 and everything.failures == 1
    assert everything.cer_micro == pytest.approx(6 / (a.reference_chars + b.reference_chars), abs=1e-4)
    assert everything.cer_macro == pytest.approx((0 + 6 / b.reference_chars) / 2, abs=1e-4)
    assert everything.pages_per_second == pytest.approx(2 / 3.0, abs=1e-4)
    assert rows[("tess", "Cyrillic")].cer_micro == 0.0 and rows[("tess", "Cyrillic")].pages == 0
    assert rows[("tess", "Latin")].pages == 2 and rows[("tess", "Latin")].failures == 1


def test_pick_pages_spreads_over_the_document():
    assert pick_pages(list(range(1, 35)), 2) == [9, 26]
    assert pick_pages([4, 5], 3) == [4, 5]
    assert pick_pages([], 2) == [] and pick_pages([1, 2], 0) == []


def test_tesseract_languages_follow_the_reference_scripts():
    installed = {"eng", "rus", "chi_sim", "jpn"}
    assert tesseract_languages("plain English", installed) == "eng"
    assert tesseract_languages("中文和English", installed) == "chi_sim+eng"
    assert tesseract_languages("日本語のテキスト", installed) == "jpn+eng"
    assert tesseract_languages("Привет", installed) == "eng+rus"
    assert tesseract_languages("Привет", {"eng"}) == "eng"


# --- scans and a real run ----------------------------------------------------------------------------------------
def test_make_scan_builds_an_image_only_pdf_of_the_chosen_pages():
    source = shared_data("pdfs", "report_nist_sp800-223.pdf")
    scan = make_scan(source, [10, 12], dpi=100)
    with open_document(scan, name="scan.pdf", limits=Limits(render_dpi=100)) as doc:
        assert doc.page_count == 2
        for number in (1, 2):
            assert doc.quality(number).reason == "image_only"
            assert (doc.text_layer(number).width, doc.text_layer(number).height) == (612.0, 792.0)
        image = doc.render(1)
    assert (image.width_px, image.height_px) == (850, 1100)  # the scan's own pixels at its dpi


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed (apt-get install tesseract-ocr)")
def test_ocr_bench_cli_runs_and_writes_reports(tmp_path, capsys):
    from engine.cli import main

    folder = shared_data("pdfs", "table_small.pdf").parent
    args = ["ocr-bench", "--pdfs", str(folder), "--files", "table_small.pdf,zero_pages.pdf", "--engines", "tesseract",
            "--dpi", "150", "--max-pages", "1", "--json", "--data-dir", str(tmp_path)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    [row] = [r for r in report["summary"] if r["script"] == "all"]
    assert row["engine"] == "tesseract" and row["pages"] == 1 and row["failures"] == 0
    assert row["cer_micro"] < 0.05 and row["pages_per_second"] > 0
    assert [s["document"] for s in report["skipped"]] == ["zero_pages.pdf"]
    json_file = tmp_path / "reports" / "ocr" / report["report_files"]["json"].rsplit("/", 1)[-1]
    assert json.loads(json_file.read_text())["summary"] == report["summary"]
    assert "| tesseract | all | 1 |" in (tmp_path / "reports" / "ocr" / json_file.name.replace(".json", ".md")).read_text()
    assert "| engine | script |" in markdown(report)
