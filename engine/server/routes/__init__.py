"""Routes, one module per concern. A new concern (OCR, collections) adds its module and its
router to ``ROUTERS``; the app factory includes them all."""

from engine.server.routes import documents, embeddings, health

ROUTERS = [health.router, embeddings.router, documents.router]
