"""The ``openvino`` provider: the model's own ONNX file run by the OpenVINO runtime (the ``openvino``
package, installed beside the standard onnxruntime wheel; onnxruntime-openvino would replace it).

``OpenVINOSession`` answers the part of ``onnxruntime.InferenceSession`` the engine uses
(``get_inputs``, ``get_outputs``, ``run``, ``get_providers``), so the session cache, the embedder and
the benchmarks treat it like any other provider. Precision: OpenVINO's own choice for the CPU, bf16
where it has AVX512_BF16 or AMX and f32 elsewhere, unless ``STUDIO_OPENVINO_PRECISION`` says ``f32``
or ``bf16``; the precision in use is reported (``precision``) and its parity is measured like any
variant's (at conversion and by the ``auto`` probe).

Three compiled forms of one model. Small batches (a query, an HTTP request) run on the LATENCY form: dynamic
shapes, one stream that uses every thread. A batch of ``BULK_ROWS`` rows or more (ingest, bulk embedding, a
server's gathered requests) runs on a THROUGHPUT form: its rows, longest first, are cut into runs of about equal
padded tokens, ~``REQUEST_TOKENS`` each (4 rows of 256 tokens, 16 of 64; at least one per stream), each run at its
own width (a run of short texts is not padded to the longest text of the batch), and each stream (one thread each)
takes the next run as it finishes. Batches whose width is at least ``STATIC_MIN_FILL`` of the model's
``max_seq_length`` (truncated abstracts, long passages) run on a form compiled for that one shape, padded to it:
OpenVINO plans its kernels and memory once (models up to ``STATIC_MAX_WIDTH`` tokens: the static form holds its
activations for the whole shape). Measured on a 2-core AMX Xeon, all-MiniLM-L6-v2, 256 SciFact abstracts in
batches of 32, raw model: dynamic 143 texts/s, static 164-174 (docs/benchmarks.md, "Static shapes"); a single
query on one stream alone would take 1.3x as long, hence the latency form. A small batch that arrives while
another call runs on the session (concurrent callers: threads, a server with several inference slots) takes a
stream of the throughput form instead of waiting for the latency form's threads. The throughput forms are compiled
with the session, and only for models up to ``BULK_MAX_BYTES`` (each holds its own copy of the weights). Infer
requests are pooled, so concurrent callers never share one. ``run_reduced`` hands each part's output to a reduction
(the embedder's pooling) as it comes back, while the streams run the rest: 256 abstracts 32 per call 142 -> 149
texts/s, 8 queries per call +2-4 % (docs/benchmarks.md, "Pooling as the parts come back").

Shapes: the dynamic forms run each batch at its width rounded up to a multiple of ``WIDTH_STEP`` (8) tokens,
padded with mask 0 and cut from the outputs. A new shape costs OpenVINO a kernel build and a re-plan of every
node; batches of 1-7 SciFact queries took 8.4 ms per call at their own widths and 6.1 ms bucketed (157 shapes
-> 39; ``scripts/openvino_shapes.py``, docs/benchmarks.md "Shapes"). A bulk batch's parts are as many for each
stream, so none idles while another runs the last. Runs at their own widths: batches of 8 shuffled SciFact
queries 7.3 -> 6.6 ms per call, of 32 27.9 -> 21.2 (docs/benchmarks.md "Parts at their own widths"); they
mean more shapes, and RSS levels off higher (below).

Packing: where the file has BERT's export pattern (``packed_model``: fp32 and int8, not the file fused for ONNX
Runtime), the two dynamic forms are compiled from a copy that also takes ``position_ids`` and ``packed_segment_ids``,
so the embedder may send a batch of short texts as packed rows (``engine.packing``: 32 SciFact queries 24.1 -> 17.9
ms per call, 8 queries 7.4 -> 6.4); a padded batch gets one segment per row and positions 0..n-1 (``_complete``:
the same outputs; 600-character passages measured 1 % slower that way). The static form is compiled from the file
as it is: full-length batches never pack. ``STUDIO_OPENVINO_PACK_TOKENS`` sets a row's tokens (0: off).

Memory: with dynamic shapes OpenVINO keeps the kernels it built for each input shape it has seen, in two
caches (its CPU plugin's runtime cache, 5000 entries by default, and oneDNN's primitive cache, 1024), and
RSS grew with every new (rows, tokens) shape (openvinotoolkit/openvino#20633). Both are capped at
``CACHE_CAPACITY`` entries (``STUDIO_OPENVINO_CACHE_CAPACITY``; an ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``
the user set wins; oneDNN reads it once, so it is set when this module is imported), and glibc's mmap
threshold is kept fixed (``fix_mmap_threshold``), so activation buffers of a shape no longer in use go back
to the system. Measured on a 2-core Zen 4 (docs/benchmarks.md, "Memory over a long run"): over 200 batches
of varied shapes +10.6-13.3 % with caches of 64, +8.1-8.2 % with the threshold fixed, +3.7-3.9 % with caches
of 32 as well, at the same speed in alternating runs.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import packing

log = logging.getLogger(__name__)

Reduce = Callable[[np.ndarray, slice | np.ndarray], np.ndarray]  # (a part's output, the batch rows it holds) -> rows
PROVIDER_NAME = "OpenVINORuntime"  # what get_providers() answers (engine.providers maps it to "openvino")
PRECISIONS = ("auto", "f32", "bf16")
BULK_ROWS = 8
BULK_MAX_BYTES = 1 << 30
REQUEST_TOKENS = 1024
STATIC_MIN_FILL = 0.92
STATIC_MAX_WIDTH = 1024  # a static form reserves its activations at compile time: not for 8k-token models
STATIC_COST = 0.87  # the static form's time per token slot, relative to the dynamic form's
CACHE_CAPACITY = 32
M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed
FAILURE_POLL_S = 0.05  # how often a call waiting on its parts looks for one that failed (OpenVINO calls no callback)
WIDTH_STEP = 8  # dynamic forms run widths rounded up to a multiple of this: few shapes, kernels found in the caches


@dataclass(frozen=True)
class Port:
    """The name and element type of an input or output, spelled as ``onnxruntime.NodeArg`` has them."""

    name: str
    type: str = "tensor(float)"


_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)", "f16": "tensor(float16)"}


def _port(port) -> Port:
    return Port(port.get_any_name(), _TYPES.get(port.get_element_type().get_type_name(), "tensor(float)"))


def is_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def precision_setting() -> str:
    value = os.environ.get("STUDIO_OPENVINO_PRECISION", "auto").strip().lower() or "auto"
    if value not in PRECISIONS:
        from engine.errors import ProviderError

        raise ProviderError(f"STUDIO_OPENVINO_PRECISION must be one of {', '.join(PRECISIONS)}, got {value!r}.",
                            "unset STUDIO_OPENVINO_PRECISION for auto")
    return value


def _cache_setting() -> str:
    return os.environ.get("STUDIO_OPENVINO_CACHE_CAPACITY", "").strip() or str(CACHE_CAPACITY)


def _whole_number(variable: str, value: str, unit: str) -> int:
    """A setting's ``value`` as a count, or a ProviderError that names ``variable`` and what it counts."""
    if not value.isdigit():
        from engine.errors import ProviderError

        raise ProviderError(f"{variable} must be a whole number of {unit}, got {value!r}.", f"unset {variable} for its default")
    return int(value)


def cache_capacity() -> int:
    """Entries each kernel cache keeps (``STUDIO_OPENVINO_CACHE_CAPACITY``, default ``CACHE_CAPACITY``)."""
    return _whole_number("STUDIO_OPENVINO_CACHE_CAPACITY", _cache_setting(), "entries")


def pack_setting() -> int:
    """Tokens per packed row (``STUDIO_OPENVINO_PACK_TOKENS``, default ``packing.CAPACITY``; 0: never pack)."""
    value = os.environ.get("STUDIO_OPENVINO_PACK_TOKENS", "").strip() or str(packing.CAPACITY)
    return _whole_number("STUDIO_OPENVINO_PACK_TOKENS", value, "tokens (0: off)")


def _arange_slice(node) -> bool:
    """``node`` is a slice from 0 of a constant 0, 1, 2, ... (transformers' ``position_ids`` buffer)."""
    if node.get_type_name() != "Slice" or node.input_value(0).get_node().get_type_name() != "Constant":
        return False
    table = node.input_value(0).get_node().get_data().reshape(-1)
    start = node.input_value(1).get_node()
    return (bool(np.array_equal(table, np.arange(table.size))) and start.get_type_name() == "Constant"
            and start.get_data().reshape(-1).tolist() == [0])


def packed_model(model):
    """``model`` (changed in place) taking ``position_ids`` and ``packed_segment_ids`` (engine.packing), or None
    where it has not the pattern of transformers' BERT-style exports: absolute positions gathered from a slice of
    the constant 0..n-1 (or from a ``position_ids`` input), and the mask unsqueezed twice to (batch, 1, 1, tokens)
    before the attention layers broadcast it. The pair mask, (batch, 1, tokens, tokens), is 1 where two tokens
    have the same segment id, and takes the place of the unsqueezed mask. Files fused for ONNX Runtime
    (``optimized``: com.microsoft Attention) and models that compute positions from the ids (RoBERTa, XLM-R) do
    not have the pattern: they run unpacked."""
    import openvino as ov
    import openvino.opset13 as ops

    params = {port.get_any_name(): port.get_node() for port in model.inputs}
    mask = params.get("attention_mask")
    if mask is None or packing.SEGMENTS in params:
        return None
    gathers = [op for op in model.get_ordered_ops() if op.get_type_name() == "Gather"
               and op.input_value(0).get_node().get_type_name() == "Constant"
               and op.input_value(0).get_node().get_friendly_name().endswith("position_embeddings.weight")]
    first = [t.get_node() for t in mask.output(0).get_target_inputs() if t.get_node().get_type_name() == "Unsqueeze"]
    second = [t.get_node() for t in first[0].output(0).get_target_inputs()
              if t.get_node().get_type_name() == "Unsqueeze"] if len(first) == 1 else []
    if len(gathers) != 1 or len(first) != 1 or len(second) != 1:
        return None
    indices = gathers[0].input_value(1).get_node()
    added = []
    if packing.POSITIONS in params:
        if indices is not params[packing.POSITIONS]:
            return None
    elif _arange_slice(indices):
        positions = ops.parameter([-1, -1], ov.Type.i64, name=packing.POSITIONS)
        positions.output(0).get_tensor().set_names({packing.POSITIONS})
        gathers[0].input(1).replace_source_output(positions.output(0))
        added.append(positions)
    else:
        return None
    segments = ops.parameter([-1, -1], ov.Type.i64, name=packing.SEGMENTS)
    segments.output(0).get_tensor().set_names({packing.SEGMENTS})
    axis = {n: ops.constant(np.array([n], np.int64)) for n in (1, 2)}
    same = ops.equal(ops.unsqueeze(segments, axis[2]), ops.unsqueeze(segments, axis[1]))  # (batch, tokens, tokens)
    pairs = ops.unsqueeze(ops.convert(same, mask.get_element_type()), axis[1])
    for target in list(second[0].output(0).get_target_inputs()):
        target.replace_source_output(pairs.output(0))
    model.add_parameters([*added, segments])
    model.validate_nodes_and_infer_types()
    return model


def _cap_onednn_cache() -> None:
    """oneDNN reads its cache size once, when the CPU plugin first builds a kernel: set it before that.
    A bad setting is left for ``cache_capacity`` to report where sessions are made."""
    value = _cache_setting()
    if value.isdigit():
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", value)


_cap_onednn_cache()


@functools.cache  # process-wide, and platform.libc_ver reads the interpreter's binary: once
def fix_mmap_threshold() -> bool:
    """glibc's malloc serves blocks of ``MMAP_THRESHOLD`` bytes or more with mmap, given back to the system when
    freed, from then on. By default it raises that threshold to the largest block freed so far, after which
    OpenVINO's activation buffers of every new shape come from the heap and stay in it: RSS grew +8 % over 200
    batches of varied shapes with the kernel caches capped, against +1.9-3.8 % with the threshold fixed
    (docs/benchmarks.md, "Memory over a long run"). Process-wide, so only where glibc is the allocator and the
    user set neither of its variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``); True if set."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # no mallopt in this process's C library
        return False


def default_precision() -> str:
    """The precision sessions get here: the setting, or what OpenVINO's CPU plugin picks on this CPU."""
    setting = precision_setting()
    if setting != "auto":
        return setting
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


@dataclass
class _Form:
    """One compiled form run over its streams, with its pool of infer requests."""

    compiled: object
    streams: int
    requests: queue.SimpleQueue
    rows: int | None = None  # a static form's rows per request
    width: int | None = None  # and its tokens


def part_count(rows: int, tokens: int, streams: int, request_tokens: int = REQUEST_TOKENS) -> int:
    """How many parts a bulk batch of ``tokens`` padded tokens runs in: about ``request_tokens`` each, at least one
    per stream and as many for each stream (5 parts on 2 streams left one stream idle for the last: 600-character
    passages in batches of 32 ran 294 texts/s with 5 parts, 324 with 6), never more than its rows."""
    parts = max(streams, -(-tokens // request_tokens))
    return min(rows, -(-parts // streams) * streams)


def balanced_parts(widths: list[int], parts: int) -> list[tuple[int, int]]:
    """(start, stop) runs of rows sorted longest first (``widths``: each row's bucketed width), ``parts`` of them (or
    one per row), each run's cost its rows times its first row's width (the padded tokens it runs at its own width).
    The costliest run is as cheap as any split into ``parts`` runs allows, and the runs are as even as that allows:
    each takes its share of the tokens still to place, so the streams finish together (rows of one width split
    into runs one row apart; 5 runs on 2 streams left one stream idle for the last: 600-character passages in
    batches of 32 ran 294 texts/s in 5 parts, 324 in 6). 8 queries of 16-64 tokens as 4 + 4 rows at the batch's
    width cost the streams 7.3 ms, as runs of equal padded tokens at their own widths 6.6 (32 queries: 27.9 ->
    21.2 ms)."""
    count = len(widths)
    parts = min(parts, count)

    def fewest(budget: int, start: int = 0) -> int:  # the fewest runs of at most ``budget`` tokens for rows start:
        runs = 0
        while start < count:
            start += max(1, budget // widths[start])
            runs += 1
        return runs

    low, high = widths[0], count * widths[0]  # one run of every row always fits ``high``
    while low < high:  # the cheapest costliest run: the smallest budget that ``parts`` runs can keep to
        middle = (low + high) // 2
        low, high = (low, middle) if fewest(middle) <= parts else (middle + 1, high)
    runs, start = [], 0
    for left in range(parts, 0, -1):
        most = min(count - start - (left - 1), max(1, low // widths[start]))  # within budget, a row for each run left
        share = sum(widths[start:]) / left  # the tokens still to place, evenly
        rows = min(most, max(1, round(share / widths[start])))
        while rows < most and fewest(low, start + rows) > left - 1:  # the rest must still fit the budget
            rows += 1
        runs.append((start, start + rows))
        start += rows
    return runs


def token_extents(feed: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's tokens up to its last unmasked one (right padding cut off), from the attention mask; every row's
    full width where the graph takes no mask (or the padding is on the left)."""
    mask = feed.get("attention_mask")
    rows, width = next(iter(feed.values())).shape[:2]
    if mask is None:
        return np.full(rows, width)
    last = width - np.argmax(mask[:, ::-1] != 0, axis=1)
    return np.where(mask.any(axis=1), last, 1)


def static_rows(width: int, request_tokens: int = REQUEST_TOKENS) -> int:
    return max(1, request_tokens // width)


def bucket_width(width: int, step: int = WIDTH_STEP) -> int:
    """The width a dynamic form runs a batch at: ``width`` rounded up to a multiple of ``step``."""
    return -(-width // step) * step


def fills_static(width: int, static_width: int | None) -> bool:
    """A batch this wide runs padded to the static form's width (measured: the static form at 256 tokens beat the
    dynamic one on 240-token batches, and lost on 224)."""
    return static_width is not None and STATIC_MIN_FILL * static_width <= width <= static_width


def _pad_part(feed: dict[str, np.ndarray], start: int, stop: int, rows: int, width: int) -> dict[str, np.ndarray]:
    """Rows ``start:stop`` of a feed as a (rows, width) request: extra rows repeat the last real one (a valid
    input, dropped from the outputs), extra tokens are right padding with mask 0 (masked, so they change no
    real token's output; pads after a causal model's text are never seen by it)."""
    out = {}
    for name, value in feed.items():
        part = value[start:stop]
        if len(part) < rows:
            part = np.concatenate([part, np.repeat(part[-1:], rows - len(part), axis=0)])
        out[name] = np.ascontiguousarray(part)
    return _pad_tokens(out, width)


def _pad_tokens(feed: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """A feed right-padded with zeros (mask 0) to ``width`` tokens; the same feed if it is that wide."""
    have = next(iter(feed.values())).shape[1]
    if have >= width:
        return feed
    padded = {}
    for name, value in feed.items():  # zeros and a copy: np.pad took 13 us per input, a query's call ~3 ms
        padded[name] = np.zeros((value.shape[0], width), dtype=value.dtype)
        padded[name][:, :have] = value
    return padded


class OpenVINOSession:
    def __init__(self, path: Path, threads: int, precision: str = "auto", kernel_cache: int = CACHE_CAPACITY,
                 static_width: int | None = None, pack_tokens: int = packing.CAPACITY) -> None:
        import openvino as ov

        fix_mmap_threshold()
        self._config: dict[str, object] = {"INFERENCE_NUM_THREADS": int(threads),
                                           "CPU_RUNTIME_CACHE_CAPACITY": int(kernel_cache)}
        if precision != "auto":
            self._config["INFERENCE_PRECISION_HINT"] = precision
        self._core = ov.Core()
        self._path = Path(path)
        model = self._core.read_model(str(self._path))  # parsed once: every form is compiled from it (~0.1 s each)
        self._inputs = [_port(port) for port in model.inputs]  # the file's own: packing's inputs are the engine's
        self._ranks = {port.get_any_name(): port.get_partial_shape().rank.get_length()
                       for port in model.outputs if port.get_partial_shape().rank.is_static}
        # the dynamic forms take packed rows where the graph allows (the static form runs long texts, never packed)
        packed = None
        if pack_tokens > 0:
            try:
                packed = packed_model(model.clone())
            except Exception as exc:  # noqa: BLE001 - a graph the edit cannot take runs as it is, unpacked
                log.warning("openvino: %s runs unpacked, its graph did not take packing: %s", self._path.name, exc)
        dynamic = packed or model
        self._extra = [port.get_any_name() for port in dynamic.inputs][len(self._inputs):]  # what _complete adds
        self.packing_capacity = pack_tokens if packed is not None else 0
        self._latency = self._form("LATENCY", dynamic)
        compiled = self._latency.compiled
        self._outputs = [_port(port) for port in compiled.outputs]
        self.precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "bf16", "f32"
        self._lock = threading.Lock()
        self._calls = 0  # run() calls in flight
        # compiled now with the session: compiled on a first big batch it stalled a server ~1 s
        bulk = threads >= 2 and self._path.stat().st_size <= BULK_MAX_BYTES
        self._bulk = self._form("THROUGHPUT", dynamic) if bulk else None
        static = bulk and static_width is not None and 0 < static_width <= STATIC_MAX_WIDTH
        self._static = self._static_form(model.clone(), static_width) if static else None

    @property
    def static_width(self) -> int | None:
        """The tokens of the static form (the model's max_seq_length), or None without one."""
        return self._static.width if self._static else None

    def _compile(self, hint: str, model):
        # compile_model takes the model as const (the plugin transforms its own copy), so one model serves each form
        return self._core.compile_model(model, "CPU", {**self._config, "PERFORMANCE_HINT": hint})

    def _form(self, hint: str, model, rows: int | None = None, width: int | None = None) -> _Form:
        compiled = self._compile(hint, model)
        streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        return _Form(compiled, streams, queue.SimpleQueue(), rows, width)

    def _static_form(self, model, width: int) -> _Form | None:
        """The throughput form compiled for one shape, (``static_rows(width)``, ``width``), from ``model`` (reshaped
        in place: a copy): OpenVINO plans kernels and memory for it once, 10-15 % faster than the dynamic form on
        full-length batches (docs/benchmarks.md, "Static shapes"). Only for graphs whose every input is
        (batch, tokens)."""
        rows = static_rows(width)
        if any(port.get_partial_shape().rank.is_dynamic or port.get_partial_shape().rank.get_length() != 2
               for port in model.inputs):
            return None
        model.reshape({port.get_any_name(): [rows, width] for port in model.inputs})
        form = self._form("THROUGHPUT", model, rows, width)
        log.info("openvino: %s compiled for bulk batches, %d streams, static %d x %d", self._path.name,
                 form.streams, rows, width)
        return form

    def row_cost(self, width: int) -> float:
        """What one row of a batch this wide costs, in token slots, for the batch planner: a batch the static form
        runs costs its padded width times ``STATIC_COST``."""
        if self._static is not None and fills_static(width, self._static.width):
            return self._static.width * STATIC_COST
        return float(width)

    def packs(self, output_name: str) -> bool:
        """Whether batches for this (token) output may come as packed rows (``engine.packing``)."""
        return self.packing_capacity > 0 and self._ranks.get(output_name) == 3

    def _complete(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A padded feed for the packed graph: one segment per row (its mask), positions 0..n-1 (those the
        original graph gathers: ``packed_model`` only takes graphs whose positions are that range)."""
        if not self._extra or packing.SEGMENTS in feed:
            return feed
        mask = feed["attention_mask"]
        added = {packing.SEGMENTS: (mask != 0).astype(np.int64)}
        if packing.POSITIONS in self._extra:
            added[packing.POSITIONS] = np.broadcast_to(np.arange(mask.shape[1], dtype=np.int64), mask.shape).copy()
        return {**feed, **added}

    def get_inputs(self) -> list[Port]:
        return list(self._inputs)

    def get_outputs(self) -> list[Port]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [PROVIDER_NAME]

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._dispatch(output_names or [port.name for port in self._outputs], feed)

    def run_reduced(self, output_name: str, feed: dict[str, np.ndarray], reduce: Reduce) -> np.ndarray:
        """One output, each part reduced as it comes back (``reduce(part_output, rows)``: ``rows`` index the batch's
        rows that part holds; e.g. pooling). The reduction runs while the streams run the other parts, and a
        (rows, tokens, hidden) output is never assembled: 32 abstracts' token outputs are 12.6 MB."""
        (vectors,) = self._dispatch([output_name], feed, reduce)
        return vectors

    def _dispatch(self, names: list[str], feed: dict[str, np.ndarray], reduce: Reduce | None = None) -> list[np.ndarray]:
        rows, width = next(iter(feed.values())).shape[:2]
        with self._lock:
            concurrent = self._calls > 0
            self._calls += 1
        try:
            bulk = self._bulk is not None and rows >= BULK_ROWS
            if (bulk and self._static is not None and fills_static(width, self._static.width)
                    and packing.SEGMENTS not in feed):
                parts = [(start, min(start + self._static.rows, rows)) for start in range(0, rows, self._static.rows)]
                return self._run_parts(self._static, names, feed, parts, width, reduce=reduce)
            feed = self._complete(feed)
            if bulk:
                return self._run_balanced(names, feed, width, reduce)
            # a small batch while another call runs takes a stream of its own (one thread) instead of the latency
            # form's every thread: two concurrent batches of 4 queries ran 1.5x faster that way than in turn
            form = self._bulk if concurrent and self._bulk is not None else self._latency
            return self._run_parts(form, names, _pad_tokens(feed, bucket_width(width)), [(0, rows)], width, reduce=reduce)
        finally:
            with self._lock:
                self._calls -= 1

    def _run_balanced(self, names: list[str], feed: dict[str, np.ndarray], width: int,
                      reduce: Reduce | None = None) -> list[np.ndarray]:
        """A bulk batch on the throughput form's streams: rows sorted longest first (the embedder's batches already
        are), cut into ``balanced_parts``, each part run at its own bucketed width, outputs in the batch's row
        order."""
        extents = token_extents(feed)
        order = None
        if (np.diff(extents) > 0).any():
            order = np.argsort(-extents, kind="stable")
            feed = {name: value[order] for name, value in feed.items()}
            extents = extents[order]
        widths = [bucket_width(int(e)) for e in extents]
        parts = balanced_parts(widths, part_count(len(widths), sum(widths), self._bulk.streams))
        return self._run_parts(self._bulk, names, feed, parts, width, [widths[start] for start, _ in parts], order,
                               reduce)

    @staticmethod
    def _take(pool: queue.SimpleQueue, compiled):
        try:
            return pool.get_nowait()
        except queue.Empty:
            return compiled.create_infer_request()

    def _run_parts(self, form: _Form, names: list[str], feed: dict[str, np.ndarray], parts: list[tuple[int, int]],
                   width: int, part_widths: list[int] | None = None, order: np.ndarray | None = None,
                   reduce: Reduce | None = None) -> list[np.ndarray]:
        """The batch's row ranges run on the form's streams: each request takes the next part as soon as it is
        done (whichever stream finishes first: with strict turns, a stream that finished early waited for the
        other's part). Outputs land at ``width`` tokens (a part may run padded to a bucket, cut back; or at
        ``part_widths``, narrower than the batch: its token outputs are zeros there, positions its mask hides), in
        row order, or at rows ``order[begin:end]`` where the feed is the batch's rows in that order; ``reduce``
        turns each part's output into what lands. A static form's parts are padded to its shape, and its outputs
        cut back to the real rows."""
        requests = [self._take(form.requests, form.compiled) for _ in range(min(form.streams, len(parts)))]
        ports = [form.compiled.output(name) for name in names]
        rows = next(iter(feed.values())).shape[0]
        results: list[np.ndarray | None] = [None] * len(names)
        finished: queue.SimpleQueue = queue.SimpleQueue()  # requests whose part is done, put by OpenVINO's threads
        waiting = iter(enumerate(parts))
        running: list = []  # requests whose part is in flight

        def start(request) -> None:
            item = next(waiting, None)
            if item is None:
                return
            number, (begin, end) = item
            request.set_callback(finished.put, (request, begin, end))
            request.start_async(self._part(form, feed, begin, end, part_widths[number] if part_widths else None))
            running.append(request)

        def collect(request, begin: int, end: int) -> None:
            request.wait()  # raises the part's error, if it failed
            at = slice(begin, end) if order is None else order[begin:end]
            for index, port in enumerate(ports):
                data = request.get_tensor(port).data[:end - begin]
                if data.ndim == 3:  # token outputs: cut padded tokens
                    data = data[:, :width]
                if reduce is not None:
                    data = reduce(data, at)
                if results[index] is None:  # zeros: where a narrower part's tokens end
                    results[index] = np.zeros((rows, width, *data.shape[2:]) if data.ndim == 3 else
                                              (rows, *data.shape[1:]), dtype=data.dtype)
                results[index][at, :data.shape[1]] = data  # a copy: the buffer serves the next part

        try:
            for request in requests:
                start(request)
            while running:
                try:
                    request, begin, end = finished.get(timeout=FAILURE_POLL_S)
                except queue.Empty:  # a failed part never calls back (OpenVINO's binding raises before the callback):
                    for request in running:  # wait_for(0) raises its error, where waiting on the queue hung the call
                        request.wait_for(0)
                    continue
                running.remove(request)
                collect(request, begin, end)
                start(request)
            return results
        finally:
            for request in requests:  # a failed part: the others finish before their requests are reused
                try:
                    request.wait()
                except Exception:  # noqa: BLE001 - the first failure is the one raised
                    pass
                form.requests.put(request)

    @staticmethod
    def _part(form: _Form, feed: dict[str, np.ndarray], begin: int, end: int, own: int | None) -> dict[str, np.ndarray]:
        """Rows ``begin:end`` of the feed as one request's input: padded to a static form's shape, or cut to the
        part's own width, or as they are."""
        if form.rows is not None:
            return _pad_part(feed, begin, end, form.rows, form.width)
        if own is not None:
            return _pad_tokens({key: np.ascontiguousarray(value[begin:end, :own]) for key, value in feed.items()}, own)
        return {key: value[begin:end] for key, value in feed.items()}
