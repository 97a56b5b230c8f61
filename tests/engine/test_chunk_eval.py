from conftest import shared_data

from engine.measure.chunk_eval import evaluate_chunking, sample_queries


def test_chunk_eval_scores_page_lookup(studio):
    files = [shared_data("pdfs", "encrypted_rc4_dmca_18p.pdf")]
    queries = sample_queries(studio, files)
    assert len(queries) >= 15 and all(60 < len(q.text) < 250 for q in queries)
    results = evaluate_chunking(studio, files, [(96, 16, False), (200, 30, True)], queries=queries)
    assert [(r.size, r.headings) for r in results] == [(96, False), (200, True)]
    assert all(0.5 < r.top1_page_accuracy <= 1.0 and r.queries == len(queries) for r in results)
    assert results[0].chunks > results[1].chunks
    assert not any(p.name.startswith("chunk-eval-") for p in studio.settings.collections_dir.iterdir())


def test_a_scanned_pdf_is_refused_with_a_hint_chunk_eval_can_follow(studio):
    """chunk-eval reads text layers only; the ingest's hint ("choose an OCR engine") named an option it has not."""
    import pytest

    from engine.errors import EmptyDocumentError

    with pytest.raises(EmptyDocumentError) as caught:
        evaluate_chunking(studio, [shared_data("pdfs", "scan_grumman_bulletin_notext.pdf")], [(96, 16, False)], queries=[])
    assert "text layers only" in caught.value.hint and "OCR engine" not in caught.value.hint
    assert not any(p.name.startswith("chunk-eval-") for p in studio.settings.collections_dir.iterdir())
