"""The HTTP API: OpenAI-compatible embeddings, health, readiness and metrics.

``create_app(studio, api_settings)`` builds the FastAPI app; ``python -m engine serve`` runs it
with uvicorn. See ``engine.server.app`` for the layout.
"""

from engine.server.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
