"""ONNX Embedding Studio engine: registry, ONNX Runtime sessions, embeddings, documents, search.

No streamlit, no torch: this package is what the app, the CLI and the HTTP server share.
"""

import sys

__version__ = "0.1.0"

# pymupdf 2.0 imports its layout analyser (the pymupdf_layout wheel it depends on) with itself: 0.4-0.6 s of every
# process's start (`python -X importtime -c "import pymupdf"`). Only Page.get_layout() and find_tables() use it and the
# studio calls neither, so the import is left out (pymupdf catches the ImportError this gives it).
sys.modules.setdefault("pymupdf.layout", None)
