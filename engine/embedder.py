"""Texts in, float32 vectors out, the way sentence-transformers computes them.

Works with both ONNX export shapes: a ``sentence_embedding`` output (pooling already in the
graph) or ``last_hidden_state``/``token_embeddings`` (pooled here, in numpy). Feeds
``token_type_ids`` and ``position_ids`` only when the graph declares them. Sorts texts by token
length, batches by count and by a token budget, and restores the input order.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import packing, pooling
from engine.errors import InferenceError, InputError, ModelFileError
from engine.manifest import AUTO_VARIANT, VARIANTS, Manifest
from engine.progress import CountProgress
from engine.registry import ModelSpec
from engine.sessions import CachedSession, SessionCache, SessionKey, SessionOptions
from engine.tokenize import Batch, Encoded, TextTokenizer

log = logging.getLogger(__name__)
# sentence-transformers' encode_document takes the first of document, passage, corpus
PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus"), "passage": ("passage", "document", "corpus")}
_ONNX_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclass(frozen=True)
class DenseWeights:
    weight: np.ndarray
    bias: np.ndarray | None
    activation: str


# What one model call costs beyond its arithmetic, in padded token slots, per runtime: the batch
# planner splits a batch where its padding would cost more than another call. Measured on
# all-minilm-l6-v2 on two 2-core machines, an AMD EPYC (AVX512-BF16) and an AMX Xeon (docs/benchmarks.md,
# "Batch plan"): the costs that won on both. OpenVINO's calls cost more, and it runs a batch of mixed lengths
# in parts of about equal padded tokens at their own widths (engine.openvino_session.balanced_parts), so its
# planner splits less (512: re-measured on the AMX Xeon with those parts, 2026-12-03). Not measured on GPUs,
# where padded rows run in parallel: there the planner keeps filling batches, as before.
CALL_COST_TOKENS = {"cpu": 16, "openvino": 512}
FILL_BATCHES = 1 << 30


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int,
                 call_cost: int = CALL_COST_TOKENS["cpu"],
                 row_cost: Callable[[int], float] | None = None) -> list[list[int]]:
    """Indices grouped into batches, longest first; a batch holds at most ``batch_size`` texts
    and at most ``max_batch_tokens`` padded tokens (always at least one text).

    Within those limits the split is the one that computes the fewest padded tokens plus
    ``call_cost`` per batch (every text is padded to its batch's longest): a 40-token text
    does not make 27 texts of 12 tokens run at 40, unless a second call costs more than that
    padding. Texts are sorted by length, so batches are runs of that order, and the cheapest
    split of each suffix is found once (dynamic programming, O(len(lengths) * batch_size)).
    ``row_cost(width)`` is what one row of a batch that wide costs, in token slots, where the runtime
    runs some widths cheaper than others (OpenVINO's static form); by default, the width itself.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    sizes = [lengths[i] for i in order]  # longest first: a batch's first text sets its width
    count = len(sizes)
    cost = [0] * (count + 1)  # cost[i]: the cheapest plan for sizes[i:]
    stop_at = [count] * (count + 1)
    for first in range(count - 1, -1, -1):
        best = None
        per_row = sizes[first] if row_cost is None else row_cost(sizes[first])  # the width is the first text's
        for stop in range(first + 1, min(count, first + batch_size) + 1):
            rows = stop - first
            if rows > 1 and rows * sizes[first] > max_batch_tokens:
                break
            total = rows * per_row + call_cost + cost[stop]
            if best is None or total <= best:  # ties: the bigger batch
                best, stop_at[first] = total, stop
        cost[first] = best
    batches: list[list[int]] = []
    first = 0
    while first < count:
        batches.append(order[first:stop_at[first]])
        first = stop_at[first]
    return batches


def load_dense(folder: Path, manifest: Manifest) -> list[DenseWeights]:
    layers = []
    for layer in manifest.dense:
        try:
            with np.load(folder / layer.file) as data:
                weight = data["weight"].astype(np.float32)
                bias = data["bias"].astype(np.float32) if layer.bias else None
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFileError(f"Dense layer file {layer.file} in {folder.name} is unreadable: {exc}",
                                 f"re-convert the model: python -m engine convert {folder.name} --force") from None
        if weight.shape != (layer.out_features, layer.in_features):
            raise ModelFileError(f"Dense layer {layer.file} has shape {weight.shape}, expected "
                                 f"({layer.out_features}, {layer.in_features})",
                                 f"re-convert the model: python -m engine convert {folder.name} --force")
        layers.append(DenseWeights(weight, bias, layer.activation))
    return layers


class Embedder:
    """One model + variant + provider. Thread-safe: ORT sessions may be run concurrently."""

    def __init__(
        self,
        spec: ModelSpec,
        variant: str | None = None,
        provider: str = "auto",
        sessions: SessionCache | None = None,
        session_options: SessionOptions | None = None,
        batch_size: int = 32,
        max_batch_tokens: int = 16384,
        provider_requested: str | None = None,
    ) -> None:
        if spec.manifest is None:
            raise ModelFileError(f"Model {spec.name!r} is not converted.", f"run: python -m engine convert {spec.name}")
        self.spec = spec
        self.manifest = spec.manifest
        self.variant = variant or spec.default_variant
        if self.variant == AUTO_VARIANT:  # measured by Studio.embedder; built directly, the reference
            self.variant = "fp32" if "fp32" in self.manifest.variants else next(iter(self.manifest.variants))
        if self.variant not in self.manifest.variants:
            raise InputError(
                f"Model {spec.name!r} has no {self.variant!r} variant (converted: {', '.join(self.manifest.variants)}).",
                (f"convert it: python -m engine convert {spec.name} --variants {self.variant} (or the Models page)"
                 if self.variant in VARIANTS else f"the variants are {', '.join(VARIANTS)}"),
            )
        self.provider = provider or "auto"  # the session key: Studio passes the provider it resolved to
        self.provider_requested = provider_requested or self.provider
        self.sessions = sessions or SessionCache()
        self.session_options = session_options or SessionOptions()
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.tokenizer = TextTokenizer.from_folder(
            spec.folder, self.manifest.max_seq_length, self.manifest.do_lower_case
        )
        self.dense = load_dense(spec.folder, self.manifest)
        # the model's own (non-empty) prompts win; the registry fills in roles the model leaves empty
        self.prompts = {**spec.prompts, **{k: v for k, v in self.manifest.prompts.items() if v}}

    def with_batching(self, batch_size: int | None = None, max_batch_tokens: int | None = None) -> Embedder:
        """A copy with other batch limits that shares the session, tokenizer and weights (the cached
        embedder other callers use keeps its own limits)."""
        clone = copy.copy(self)
        clone.batch_size = batch_size or self.batch_size
        clone.max_batch_tokens = max_batch_tokens or self.max_batch_tokens
        return clone

    # -- session --------------------------------------------------------------------------------
    @property
    def key(self) -> SessionKey:
        return SessionKey(self.spec.name, self.variant, self.provider, self.session_options)

    def session(self) -> CachedSession:
        path = self.spec.folder / self.manifest.variants[self.variant].file
        return self.sessions.get(self.key, path, warmup=self._warmup, max_tokens=self.manifest.max_seq_length)

    def _warmup(self, session) -> None:
        self._run(session, self.tokenizer.batch(["warm up"]))

    @property
    def dim(self) -> int:
        return self.manifest.dim

    def info(self) -> dict[str, object]:
        cached = self.session()
        return {
            "model": self.spec.name,
            "variant": self.variant,
            "provider_requested": self.provider_requested,
            "provider": cached.active_provider,
            "fallback": cached.fallback,
            "dim": self.dim,
            "max_seq_length": self.manifest.max_seq_length,
            "load_seconds": round(cached.load_seconds, 3),
            # the arithmetic the provider really uses: OpenVINO picks bf16 on CPUs that have it
            "precision": getattr(cached.session, "precision", None),
        }

    # -- inference ------------------------------------------------------------------------------
    def _feed(self, session, batch: Batch) -> dict[str, np.ndarray]:
        feed = {}
        for node in session.get_inputs():
            dtype = _ONNX_INT_TYPES.get(node.type, np.int64)
            if node.name == "input_ids":
                feed[node.name] = batch.input_ids.astype(dtype, copy=False)
            elif node.name == "attention_mask":
                feed[node.name] = batch.attention_mask.astype(dtype, copy=False)
            elif node.name == "token_type_ids":
                feed[node.name] = batch.token_type_ids.astype(dtype, copy=False)
            elif node.name == "position_ids":
                # what transformers uses when no position_ids are passed: 0..seq-1 on every row
                positions = np.arange(batch.shape[1], dtype=dtype)
                feed[node.name] = np.broadcast_to(positions, batch.shape).copy()
            else:
                raise ModelFileError(f"The ONNX graph asks for an input {node.name!r} the engine cannot provide.",
                                     "the engine feeds input_ids, attention_mask, token_type_ids and position_ids: "
                                     f"re-convert it (python -m engine convert {self.spec.name} --force) "
                                     "or use another model")
        return feed

    def _output_name(self, session) -> str:
        names = [o.name for o in session.get_outputs()]
        for candidate in (self.manifest.onnx_output, "sentence_embedding", "last_hidden_state", "token_embeddings"):
            if candidate in names:
                return candidate
        return names[0]

    def _run(self, session, batch: Batch, prompt_length: int = 0) -> np.ndarray:
        """The batch's vectors. A session that runs a batch in parts (OpenVINO's ``run_reduced``) pools each part as it
        comes back, while the others run; otherwise the whole output is pooled after the call."""
        name = self._output_name(session)
        feed = self._feed(session, batch)
        mask = batch.attention_mask

        def pooled(output: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
            return self._postprocess(output, mask[rows, :output.shape[1]] if output.ndim == 3 else mask[rows], prompt_length)

        try:
            if hasattr(session, "run_reduced"):
                return session.run_reduced(name, feed, pooled)
            (output,) = session.run([name], feed)
        except Exception as exc:  # a runtime failure (out of memory, bad shapes), ONNX Runtime's or OpenVINO's
            raise self._inference_failed(exc) from None
        return pooled(output, slice(None))

    def _inference_failed(self, exc: Exception) -> InferenceError:
        return InferenceError(f"Inference failed on {self.spec.name}/{self.variant} ({self.provider}): {str(exc)[:300]}",
                              f"python -m engine check --model {self.spec.name} tests the model; "
                              "if memory ran out, use a smaller --batch-size")

    def _packing_capacity(self, session) -> int:
        """Tokens per packed row for short batches on this session (0: never packed). Only sessions that take packed
        rows (OpenVINO's, on BERT-pattern graphs), only for a token output pooled here, only right padding."""
        packs = getattr(session, "packs", None)
        if packs is None or self.tokenizer.padding_side != "right" or not packs(self._output_name(session)):
            return 0
        return session.packing_capacity

    def _run_packed(self, session, items: list[Encoded], capacity: int, prompt_length: int) -> np.ndarray:
        """Short texts packed several to a row (``engine.packing``), run once, cut back out and pooled: the same
        vectors as padded rows (each text attends to itself only, at its own positions)."""
        packed = packing.pack(items, capacity, self.tokenizer.pad_id)
        types = {node.name: _ONNX_INT_TYPES.get(node.type, np.int64) for node in session.get_inputs()}
        feed = {name: value.astype(types.get(name, np.int64), copy=False) for name, value in packed.feed.items()
                if name in types or name in (packing.POSITIONS, packing.SEGMENTS)}
        name = self._output_name(session)
        try:
            (output,) = session.run([name], feed)
        except Exception as exc:  # as in _run: the runtime's failure, with its cause
            raise self._inference_failed(exc) from None
        tokens, mask = packing.unpack(output, packed)
        return self._postprocess(tokens, mask, prompt_length)

    def _postprocess(self, output: np.ndarray, mask: np.ndarray, prompt_length: int) -> np.ndarray:
        if output.ndim == 2:  # pooling, Dense and Normalize already ran inside the graph
            return output.astype(np.float32)
        if not self.manifest.include_prompt and prompt_length:
            mask = pooling.exclude_prompt(mask, prompt_length)
        vectors = pooling.pool(output, mask, self.manifest.pooling_modes)
        for layer in self.dense:
            vectors = pooling.dense(vectors, layer.weight, layer.bias, layer.activation)
        if self.manifest.normalize:
            vectors = pooling.l2_normalize(vectors)
        return vectors

    def _prompt(self, name: str) -> str | None:
        """The model's prompt for a name or role; a document role accepts the passage/corpus spellings."""
        return next((self.prompts[n] for n in PROMPT_NAMES.get(name, (name,)) if n in self.prompts), None)

    def resolve_prompt(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        if prompt is not None:
            return prompt
        name = prompt_name or self.manifest.default_prompt_name
        if name is None:
            return ""
        found = self._prompt(name)
        if found is not None:
            return found
        if prompt_name is None:
            return ""
        raise InputError(
            f"Model {self.spec.name!r} has no prompt named {name!r} (prompts: {', '.join(self.prompts) or 'none'}).",
            "use one of those prompt names, or leave it out",
        )

    def embed(
        self,
        texts: Sequence[str],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        normalize: bool | None = None,
        dimensions: int | None = None,
        progress: CountProgress | None = None,
    ) -> np.ndarray:
        """(len(texts), dim) float32 in input order. An empty list gives an empty (0, dim) array."""
        if isinstance(texts, str):
            raise InputError("embed() takes a list of texts, not a single string.", "pass a list: embed([text])")
        dim = dimensions or self.dim
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        if dimensions is not None and not 0 < dimensions <= self.dim:
            raise InputError(f"dimensions must be between 1 and {self.dim}, got {dimensions}.",
                             f"leave --dimensions out for all {self.dim}, or ask for fewer")
        prefix = self.resolve_prompt(prompt_name, prompt)
        prompt_length = self.tokenizer.prompt_length(prefix) if prefix else 0
        encoded: list[Encoded] = self.tokenizer.encode([prefix + str(t) for t in texts])
        result = self.embed_encoded(encoded, prompt_length, progress=progress)
        if dimensions is not None and dimensions < self.dim:
            result = pooling.truncate_dim(result, dimensions, renormalize=True)
        elif normalize:
            result = pooling.l2_normalize(result)
        return result

    def embed_encoded(self, encoded: Sequence[Encoded], prompt_length: int = 0,
                      progress: CountProgress | None = None) -> np.ndarray:
        """Vectors for texts already tokenized by ``self.tokenizer`` (prompt included), in their order.
        The HTTP server tokenizes each request once (for its token budget and ``usage``) and hands the
        result here, so nothing is tokenized twice."""
        if not encoded:
            return np.zeros((0, self.dim), dtype=np.float32)
        cached = self.session()
        batches = plan_batches([len(e.ids) for e in encoded], self.batch_size, self.max_batch_tokens,
                               CALL_COST_TOKENS.get(cached.active_provider, FILL_BATCHES),
                               getattr(cached.session, "row_cost", None))  # OpenVINOSession has one
        result = np.zeros((len(encoded), self.dim), dtype=np.float32)
        capacity = self._packing_capacity(cached.session)
        done = 0
        started = time.perf_counter()
        for indices in batches:
            items = [encoded[i] for i in indices]
            if packing.worth_packing([len(item.ids) for item in items], capacity):
                vectors = self._run_packed(cached.session, items, capacity, prompt_length)
            else:
                vectors = self._run(cached.session, self.tokenizer.pad(items), prompt_length)
            if not np.isfinite(vectors).all():
                raise InferenceError(
                    f"{self.spec.name}/{self.variant} produced NaN or infinite values (numeric overflow).",
                    "use the fp32 variant for this model",
                )
            result[indices] = vectors
            done += len(indices)
            if progress is not None:
                progress(done, len(encoded))
        log.debug("embedded %d texts in %d batches in %.3fs", len(encoded), len(batches), time.perf_counter() - started)
        return result

    def embed_queries(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        return self.embed(texts, prompt=self.prompt_for("query"), **kwargs)

    def embed_documents(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        return self.embed(texts, prompt=self.prompt_for("document"), **kwargs)

    def prompt_for(self, role: str) -> str:
        """The prompt sentence-transformers' encode_query / encode_document would use ('' if none)."""
        return self._prompt(role) or ""
