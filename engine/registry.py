"""The model registry: ``models.yaml`` (curated models) merged with the converted model folders.

``models.yaml`` is data, validated on load; an error names the file, the model and the key.
A model converted from any Hugging Face id (not only the curated ones) shows up too, read from
its manifest in ``<data dir>/models/<name>``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ModelFileError, ModelNotConvertedError, ModelNotFoundError, RegistryError
from engine.manifest import AUTO_VARIANT, MANIFEST_FILE, POOLING_MODES, VARIANT_CHOICES, VARIANTS, Manifest, read_manifest

log = logging.getLogger(__name__)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hf_id: str
    description: str
    dim: int = Field(gt=0)
    max_seq_length: int = Field(gt=0)
    pooling: list[Literal[POOLING_MODES]] = Field(min_length=1)  # type: ignore[valid-type]
    normalize: bool
    variants: list[Literal[VARIANTS]] = Field(min_length=1)  # type: ignore[valid-type]
    # auto: the fastest converted variant that keeps fp32 quality on the machine it runs on (engine.variant_probe)
    default_variant: Literal[VARIANT_CHOICES] = AUTO_VARIANT  # type: ignore[valid-type]
    offline_source: str | None = None
    license: str = "unknown"
    languages: list[str] = ["en"]
    prompts: dict[str, str] = {}
    trust_remote_code: bool = False

    @field_validator("hf_id")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
            raise ValueError("must look like 'owner/name'")
        return value

    @model_validator(mode="after")
    def _default_in_variants(self) -> _Entry:
        if self.default_variant != AUTO_VARIANT and self.default_variant not in self.variants:
            raise ValueError(f"default_variant {self.default_variant!r} is not in variants {self.variants}")
        return self


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_model: str
    models: dict[str, _Entry]


@dataclass(frozen=True)
class ModelSpec:
    """A model the studio knows: curated in models.yaml and/or converted on disk."""

    name: str
    hf_id: str
    description: str
    dim: int
    max_seq_length: int
    pooling: tuple[str, ...]
    normalize: bool
    variants: tuple[str, ...]
    default_variant: str
    offline_source: str | None
    license: str
    languages: tuple[str, ...]
    prompts: dict[str, str]
    trust_remote_code: bool
    curated: bool
    folder: Path
    manifest: Manifest | None

    @property
    def converted(self) -> bool:
        return self.manifest is not None

    @property
    def conversion_source(self) -> str:
        return self.offline_source or self.hf_id


def _format_error(path: Path, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = f"model {loc[1]!r}, key {'.'.join(map(str, loc[2:])) or '?'}" if loc[:1] == ["models"] and len(
            loc
        ) > 1 else f"key {'.'.join(map(str, loc))}"
        message = "missing" if err["type"] == "missing" else err["msg"]
        problems.append(f"{where}: {message}")
    return f"{path}: " + "; ".join(problems)


def load_registry_file(path: Path) -> _File:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"The model registry {path} does not exist.", "set STUDIO_REGISTRY") from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path} is not valid YAML: {exc}", "fix the syntax error it points to") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise RegistryError(_format_error(Path(path), exc), "fix models.yaml (see the README's model section)") from None
    for name in parsed.models:
        if not NAME_PATTERN.match(name):
            raise RegistryError(f"{path}: model {name!r}: the name must be lower-case letters, digits, '.', '_', '-'",
                                f"rename it in {Path(path).name}")
    if parsed.default_model not in parsed.models:
        raise RegistryError(f"{path}: default_model {parsed.default_model!r} is not one of the models listed",
                            f"set default_model to one of: {', '.join(parsed.models)}")
    return parsed


def spec_from_manifest(folder: Path, manifest: Manifest) -> ModelSpec:
    """A spec for a converted folder that models.yaml does not list."""
    return ModelSpec(
        name=folder.name,
        hf_id=manifest.source,
        description=f"converted from {manifest.source}",
        dim=manifest.dim,
        max_seq_length=manifest.max_seq_length,
        pooling=manifest.pooling_modes,
        normalize=manifest.normalize,
        variants=tuple(manifest.variants),
        default_variant=AUTO_VARIANT,
        offline_source=None,
        license="unknown",
        languages=(),
        prompts=dict(manifest.prompts),
        trust_remote_code=False,
        curated=False,
        folder=folder,
        manifest=manifest,
    )


class Registry:
    """models.yaml plus the converted folders under ``models_dir``; re-read on ``refresh()``."""

    def __init__(self, registry_file: Path, models_dir: Path) -> None:
        self.registry_file = Path(registry_file)
        self.models_dir = Path(models_dir)
        self._file = load_registry_file(self.registry_file)

    @property
    def default_model(self) -> str:
        return self._file.default_model

    def refresh(self) -> None:
        self._file = load_registry_file(self.registry_file)

    def folder(self, name: str) -> Path:
        return self.models_dir / name

    def _from_entry(self, name: str, entry: _Entry, manifest: Manifest | None) -> ModelSpec:
        return ModelSpec(
            name=name,
            hf_id=entry.hf_id,
            description=entry.description,
            dim=entry.dim,
            max_seq_length=entry.max_seq_length,
            pooling=tuple(entry.pooling),
            normalize=entry.normalize,
            variants=tuple(entry.variants),
            default_variant=entry.default_variant,
            offline_source=entry.offline_source,
            license=entry.license,
            languages=tuple(entry.languages),
            prompts=dict(entry.prompts),
            trust_remote_code=entry.trust_remote_code,
            curated=True,
            folder=self.folder(name),
            manifest=manifest,
        )

    def _manifest_or_none(self, folder: Path) -> Manifest | None:
        if not (folder / MANIFEST_FILE).is_file():
            return None
        try:
            return read_manifest(folder)
        except ModelFileError as exc:
            log.warning("ignoring model folder %s: %s", folder, exc.message)
            return None

    def list(self) -> list[ModelSpec]:
        specs = {
            name: self._from_entry(name, entry, self._manifest_or_none(self.folder(name)))
            for name, entry in self._file.models.items()
        }
        if self.models_dir.is_dir():
            for folder in sorted(self.models_dir.iterdir()):
                if folder.name not in specs and folder.is_dir():
                    manifest = self._manifest_or_none(folder)
                    if manifest is not None:
                        specs[folder.name] = spec_from_manifest(folder, manifest)
        return list(specs.values())

    def names(self) -> list[str]:
        return [spec.name for spec in self.list()]

    def get(self, name: str) -> ModelSpec:
        entry = self._file.models.get(name)
        folder = self.folder(name)
        if entry is not None:
            return self._from_entry(name, entry, self._manifest_or_none(folder))
        if NAME_PATTERN.match(name) and (folder / MANIFEST_FILE).is_file():
            return spec_from_manifest(folder, read_manifest(folder))
        known = ", ".join(self.names())
        raise ModelNotFoundError(
            f"Unknown model {name!r}. Known models: {known}.",
            "pick one of those, or convert a Hugging Face model: python -m engine convert OWNER/NAME --name NAME",
        )

    def require_converted(self, name: str) -> ModelSpec:
        spec = self.get(name)
        if spec.manifest is None:
            raise ModelNotConvertedError(
                f"Model {name!r} is in the registry but has not been converted yet.",
                f"run: python -m engine convert {name}",
            )
        return spec
