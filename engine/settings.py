"""Settings, read from ``STUDIO_*`` environment variables (and ``--data-dir`` on the CLI).

Everything the studio writes lives under one data directory: converted models, collections,
benchmark reports. Limits that protect the machine (upload size, pages, render DPI) are settings
so that the UI, the CLI and the HTTP API enforce the same numbers.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
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
    # off: with the arena on and the memory-pattern planner off, RSS stays flat over batches of varying shapes
    # (+1.4 % after warm-up over 200 batches, against +12.8 % with the planner on; same speed; docs/rss-curve.png)
    mem_pattern: bool = False
    session_cache_size: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=1)
    max_batch_tokens: int = Field(16384, ge=64)
    log_json: bool = False
    log_level: str = "INFO"
    shared_data: Path = Field(REPO_ROOT.parent / "shared" / "data",
                              description="The shared corpus (PDFs, SciFact) benchmarks and evaluations read by default")
    converter_url: str | None = Field(None, description="Converter service (converter/server.py); unset: run it locally")

    # who may use the app: with either set, the app asks for it before anything else (API_TOKEN is the
    # HTTP API's bearer token; STUDIO_APP_PASSWORD, when set, is the app's password instead)
    app_password: SecretStr | None = Field(None, description="The app's password (default: API_TOKEN)")
    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("API_TOKEN", "STUDIO_API_TOKEN"),
                                        description="The HTTP API's bearer token; the app's password when no other is set")

    # search: the defaults a NEW collection stores in its collection.json (existing ones keep theirs)
    search_mode: Literal["dense", "keyword", "hybrid"] = Field("hybrid", description="Default search mode")
    search_language: str = Field("en", description="Stemmer and stop words of keyword search (en, de, fr, ..., none)")
    hybrid_dense_weight: float = Field(0.5, ge=0.0, le=1.0, description="Dense share of the hybrid RRF fusion")
    ann_threshold: int = Field(20_000, ge=1, description="Chunks from which dense search uses the HNSW index")
    ann_dtype: Literal["f32", "f16", "i8"] = Field("f16", description="Vector storage inside the HNSW index")
    # 256: recall@10 0.989 at 1M vectors (128: 0.944), p50 5.8 ms (README, "Search at scale")
    ann_ef: int = Field(256, ge=8, le=4096, description="HNSW search breadth (expansion_search)")

    # where NEW collections keep their chunks and vectors (an existing collection says in its collection.json)
    vector_store: Literal["embedded", "qdrant"] = Field("embedded", description="embedded (files) or qdrant")
    qdrant_url: str | None = Field(None, description="Qdrant server or cluster, e.g. http://qdrant:6333")
    qdrant_api_key: SecretStr | None = Field(None, description="Qdrant API key (never logged)")
    qdrant_path: Path | None = Field(None, description="qdrant-client embedded local mode folder (no server)")

    # local OCR (tesseract, rapidocr and the per-page orchestrator, engine/page_extraction.py)
    ocr_auto_engines: str = Field("tesseract,rapidocr", description="OCR engines auto tries, best first")
    ocr_workers: int | None = Field(None, ge=1, le=256, description="pages OCR'd at once; default: usable cores")
    ocr_languages: str = Field("eng", description="Tesseract languages, joined with '+' (eng+deu+fra)")
    ocr_timeout_s: float = Field(300.0, gt=0, description="longest one page may take")
    tesseract_cmd: str = Field("tesseract", description="the tesseract program (name on PATH or full path)")
    tesseract_psm: int = Field(3, ge=0, le=13, description="page segmentation mode; 3 = automatic")
    tesseract_threads: int = Field(1, ge=1, le=64, description="OMP_THREAD_LIMIT for each tesseract run")
    rapidocr_threads: int | None = Field(None, ge=1, le=256, description="RapidOCR's ONNX Runtime intra-op threads")
    rapidocr_text_score: float = Field(0.5, ge=0.0, le=1.0, description="minimum RapidOCR recognition score kept")

    # documents
    max_upload_mb: int = Field(200, ge=1)
    max_pages: int = Field(2000, ge=1)
    render_dpi: int = Field(200, ge=36, le=600)

    @field_validator("app_password", "api_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def app_secret(self) -> str | None:
        """What the app asks for before anything else, or None (an open app, as on a laptop)."""
        secret = self.app_password or self.api_token
        return secret.get_secret_value() if secret is not None else None

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


class ConverterSettings(BaseSettings):
    """The converter service's STUDIO_CONVERTER_* settings (plus API_TOKEN, shared with the main API)."""

    model_config = SettingsConfigDict(env_prefix="STUDIO_CONVERTER_", extra="ignore", frozen=True)

    allowed_dir: Path | None = Field(None, description="local model folders may be converted only from inside this one")
    remote_code_allowlist: str = Field("", description="comma list of model ids (or registry names, or folders) "
                                                       "whose own Python code may run")
    max_queue: int = Field(16, ge=1, description="jobs waiting at most; more are refused with 429")
    job_timeout_s: float = Field(3600.0, gt=0, description="a conversion running longer is stopped")
    log_lines: int = Field(2000, ge=10, description="log lines kept per job")
    keep_jobs: int = Field(200, ge=1, description="finished jobs remembered")
    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("API_TOKEN", "STUDIO_CONVERTER_API_TOKEN"))

    @property
    def allowlist(self) -> frozenset[str]:
        return frozenset(item.strip().lower() for item in self.remote_code_allowlist.split(",") if item.strip())


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
