"""The HTTP API: OpenAI-compatible embeddings, health, readiness and metrics.

``create_app(studio, api_settings)`` builds the FastAPI app; ``python -m engine serve`` runs it
with uvicorn. See ``engine.server.app`` for the layout.

The app is imported on first use, so the light parts (``limits``, ``auth``, ``errors``: web framework only) serve
the converter API too, in an environment without the engine's runtime.
"""

from __future__ import annotations

__all__ = ["create_app", "create_app_from_env"]


def __getattr__(name: str):
    if name in __all__:
        from engine.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'engine.server' has no attribute {name!r}")
