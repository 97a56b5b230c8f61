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
    mem_pattern: bool = True
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
