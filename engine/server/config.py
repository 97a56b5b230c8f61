"""Settings of the HTTP API, read from ``STUDIO_API_*`` environment variables (and ``API_TOKEN``).

They live here rather than in ``engine.settings`` because only the server reads them; the batching
token budget is the engine-wide ``STUDIO_MAX_BATCH_TOKENS`` so that the server and in-process
callers batch by the same number.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.settings import build


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_API_", extra="ignore", frozen=True, populate_by_name=True)

    # the token is a SecretStr so that it never shows up in a repr, a log line or a traceback
    token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("API_TOKEN", "STUDIO_API_TOKEN"),
        description="Bearer token every route but /health requires; unset or empty: no auth",
    )
    model: str | None = Field(None, description="Model warmed up at start and used when a request names none")
    variant: str | None = Field(None, description="Variant of that model (default: its registry default)")
    provider: str | None = Field(None, description="Execution provider (default: STUDIO_PROVIDER)")

    # limits, each answered with a 4xx
    max_items: int = Field(2048, ge=1, description="Texts per request (OpenAI's limit is 2048)")
    max_chars: int = Field(32768, ge=1, description="Characters per text (~8192 tokens, OpenAI's per-input limit)")
    max_body_mb: float = Field(16.0, gt=0, description="Request body size")

    # batching across requests
    max_batch_items: int = Field(128, ge=1, description="Texts per inference call, gathered from many requests")
    # 0: a free worker takes what is queued at once, and what arrives while it runs forms the next batch (TEI's
    # continuous batching); a wait only delays light traffic (1 client: 11.4 ms p50 at 5 ms, 6.2 ms at 0)
    max_wait_ms: float = Field(0.0, ge=0, description="How long the oldest waiting text may wait for others to join")
    # closed-loop callers answered by the last batch come back within ~1-2 ms; waiting for them merges two half-size
    # cohorts into one batch (8 clients: mean batch 3.9 -> 7.9 texts); one that sends again ends the wait at once
    linger_ms: float = Field(2.0, ge=0, description="How long a free worker waits for the callers it just answered "
                             "to send their next request")
    max_queue_items: int = Field(65536, ge=1, description="Texts waiting per model before new requests get 503")
    inference_threads: int = Field(1, ge=1, le=16, description="Inference calls in flight at once (1 fits a CPU)")
    warmup_retry_s: float = Field(5.0, gt=0, description="Retry interval while the default model cannot be loaded")

    @field_validator("token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def auth_enabled(self) -> bool:
        return self.token is not None


def load_api_settings(**overrides: object) -> ApiSettings:
    """Settings from the environment plus explicit overrides (None values ignored); invalid values are a ConfigError."""
    return build(ApiSettings, "API settings", **overrides)
