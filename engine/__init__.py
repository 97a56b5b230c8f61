"""ONNX Embedding Studio engine: registry, ONNX Runtime sessions, embeddings, documents, search.

No streamlit, no torch: this package is what the app, the CLI and the HTTP server share.
"""

__version__ = "0.1.0"
