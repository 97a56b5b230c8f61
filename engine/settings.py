"""Settings, read from ``STUDIO_*`` environment variables (and ``--data-dir`` on the CLI).

Everything the studio writes lives under one data directory: converted models, collections,
benchmark reports. Limits that protect the machine (upload size, pages, render DPI) are settings
so that the UI, the CLI and the HTTP API enforce the same numbers.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_", extra="ignore", frozen=True)

    data_dir: Path = Field(Path("data"), description="Root for models, collections and reports")
    registry: Path = Field(REPO_ROOT / "models.yaml", description="The model registry file")
    provider: str = Field("auto", description="Execution provider: auto, cpu, cuda, tensorrt, ...")
    intra_op_threads: int | None = Field(None, ge=1, description="ONNX Runtime intra-op threads")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    cpu_mem_arena: bool = True
    mem_pattern: bool = True
    session_cache_size: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=1)
    max_batch_tokens: int = Field(16384, ge=64)
    log_json: bool = False
    log_level: str = "INFO"
    converter_url: str | None = Field(None, description="Converter service (converter/server.py); unset: run it locally")

    # search: the defaults a NEW collection stores in its collection.json (existing ones keep theirs)
    search_mode: Literal["dense", "keyword", "hybrid"] = Field("hybrid", description="Default search mode")
    search_language: str = Field("en", description="Stemmer and stop words of keyword search (en, de, fr, ..., none)")
    hybrid_dense_weight: float = Field(0.5, ge=0.0, le=1.0, description="Dense share of the hybrid RRF fusion")
    ann_threshold: int = Field(20_000, ge=1, description="Chunks from which dense search uses the HNSW index")
    ann_dtype: Literal["f32", "f16", "i8"] = Field("f16", description="Vector storage inside the HNSW index")
    ann_ef: int = Field(128, ge=8, le=4096, description="HNSW search breadth (expansion_search)")

    # where NEW collections keep their chunks and vectors (an existing collection says in its collection.json)
    vector_store: Literal["embedded", "qdrant"] = Field("embedded", description="embedded (files) or qdrant")
    qdrant_url: str | None = Field(None, description="Qdrant server or cluster, e.g. http://qdrant:6333")
    qdrant_api_key: SecretStr | None = Field(None, description="Qdrant API key (never logged)")
    qdrant_path: Path | None = Field(None, description="qdrant-client embedded local mode folder (no server)")

    # documents
    max_upload_mb: int = Field(200, ge=1)
    max_pages: int = Field(2000, ge=1)
    render_dpi: int = Field(200, ge=36, le=600)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def collections_dir(self) -> Path:
        return self.data_dir / "collections"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    def search_defaults(self, language: str | None = None) -> dict:
        """The ``search`` entry of a new collection's manifest (see engine/retrieval.py SearchConfig)."""
        return {"mode": self.search_mode, "language": language or self.search_language,
                "dense_weight": self.hybrid_dense_weight,
                "ann": {"threshold": self.ann_threshold, "dtype": self.ann_dtype, "expansion_search": self.ann_ef}}

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


def build(settings_class: type[BaseSettings], label: str = "settings", **overrides: object):
    """``settings_class`` from the environment plus explicit overrides (None values ignored); invalid
    values are a ConfigError that names the environment variables."""
    try:
        return settings_class(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        prefix = settings_class.model_config.get("env_prefix", "")
        problems = "; ".join(f"{prefix}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"Invalid {label}: {problems}", "fix the environment variable(s) named") from None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides; invalid values are a ConfigError."""
    return build(Settings, **overrides)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
