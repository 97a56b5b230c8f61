"""Measurement, kept apart from the product code it measures: every figure in the README comes from here.

- ``bench``: embedding throughput and parity (providers x variants x batch sizes, the PyTorch baseline,
  OpenAI-compatible servers); ``peers``/``peer_env``: sentence-transformers and fastembed side by side,
  each in its own process and environment; ``memory``: RSS over many batches.
- ``evaluation``: retrieval quality on a BEIR dataset (nDCG@10, Recall@100) per search mode;
  ``chunk_eval``: which chunk size finds the right page; ``search``: exact vs HNSW latency and recall.
- ``ocr``: OCR accuracy (CER) and speed on scanned copies of real PDFs; ``ocr_throughput``: pages/s per
  worker count.
- ``loadtest``: closed-loop HTTP clients against ``python -m engine serve``.
"""
