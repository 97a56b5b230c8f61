"""Which store a collection lives in: the embedded files (engine/collection.py) or Qdrant
(engine/qdrant_store.py). An existing collection says so in its collection.json; a new one gets the
store asked for, else STUDIO_VECTOR_STORE."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from engine.collection import MANIFEST, NAME, Collection
from engine.errors import InputError

log = logging.getLogger(__name__)
STORES = ("embedded", "qdrant")


def stored_kind(root: Path, name: str) -> str | None:
    """The store an existing collection's manifest names; None for no (readable) collection."""
    if not NAME.match(name or ""):
        return None  # Collection() refuses the name with a clear error
    try:
        data = json.loads((Path(root) / name / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "embedded"
    store = data.get("store") if isinstance(data, dict) else None
    kind = store.get("kind") if isinstance(store, dict) else None
    return kind if kind in STORES else "embedded"  # a malformed manifest: the embedded reader reports it


def open_collection(settings, name: str, store: str | None = None, kind: str | None = None) -> Collection:
    """The collection ``name`` in the store it was made in (``kind``, when the caller read it already), or
    in ``store`` / STUDIO_VECTOR_STORE for a new one."""
    root = Path(settings.collections_dir)
    kind = kind or stored_kind(root, name) or store or settings.vector_store
    if kind not in STORES:
        raise InputError(f"{kind!r} is not a vector store.", f"use one of {', '.join(STORES)}")
    if kind == "qdrant":
        from engine.qdrant_store import QdrantCollection, QdrantConnection

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        connection = QdrantConnection(settings.qdrant_url, str(settings.qdrant_path) if settings.qdrant_path else None,
                                      key)
        return QdrantCollection(root, name, connection)
    return Collection(root, name)
