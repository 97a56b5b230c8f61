"""The ``openvino`` provider: the model's own ONNX files through the OpenVINO runtime, beside ONNX Runtime.

Parity is checked on real SciFact abstracts against fp32 on ONNX Runtime (itself within 1e-6 of
sentence-transformers, test_parity); concurrency on one session is checked against sequential results."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import providers
from engine.errors import ModelFileError, ProviderError
from engine.manifest import read_manifest
from engine.settings import load_settings
from engine.studio import Studio

ROOT = Path(__file__).resolve().parents[2]
MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def abstracts() -> list[str]:
    with shared_data("scifact", "corpus.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(48), handle)]
    return [(row["title"] + " " + row["text"]).strip() for row in rows]


def _studio(default_model) -> Studio:
    return Studio(load_settings(data_dir=default_model.parent.parent))


def test_openvino_is_listed_and_runs_without_onnxruntime_providers():
    assert "openvino" in providers.available()
    assert providers.available().index("openvino") < providers.available().index("cpu")
    choice = providers.resolve("OpenVINO")
    assert choice.name == "openvino" and choice.ort_providers == ()
    assert providers.resolve("auto").name == "cpu"  # a CPU host: the auto *variant* compares the two (probe)
    row = next(r for r in providers.status() if r.name == "openvino")
    assert row.available and "OpenVINO runtime" in row.note


@pytest.mark.parametrize("variant", ["fp32", "optimized"])
def test_openvino_keeps_the_fp32_tier_on_real_abstracts(default_model, abstracts, variant):
    studio = _studio(default_model)
    reference = studio.embedder(MODEL, "fp32", "cpu").embed(abstracts)
    embedder = studio.embedder(MODEL, variant, "openvino")
    got = embedder.embed(abstracts)
    info = embedder.info()
    assert info["provider"] == "openvino" and info["fallback"] is None and info["precision"] in ("bf16", "f32")
    assert got.shape == reference.shape and got.dtype == np.float32
    cosines = (got * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines.min()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_f32_precision_matches_onnx_runtime_to_float_rounding(default_model, abstracts, monkeypatch):
    monkeypatch.setenv("STUDIO_OPENVINO_PRECISION", "f32")
    studio = _studio(default_model)
    embedder = studio.embedder(MODEL, "fp32", "openvino")
    got = embedder.embed(abstracts[:16])
    assert embedder.info()["precision"] == "f32"
    reference = studio.embedder(MODEL, "fp32", "cpu").embed(abstracts[:16])
    assert float(np.abs(got - reference).max()) < 1e-5


def test_a_bad_precision_setting_is_a_message(default_model, monkeypatch):
    monkeypatch.setenv("STUDIO_OPENVINO_PRECISION", "int4")
    with pytest.raises(ProviderError, match="STUDIO_OPENVINO_PRECISION must be one of auto, f32, bf16"):
        _studio(default_model).embedder(MODEL, "fp32", "openvino").embed(["x"])


def test_a_bad_kernel_cache_setting_is_a_message(default_model, monkeypatch):
    monkeypatch.setenv("STUDIO_OPENVINO_CACHE_CAPACITY", "lots")
    with pytest.raises(ProviderError, match="STUDIO_OPENVINO_CACHE_CAPACITY must be a whole number"):
        _studio(default_model).embedder(MODEL, "fp32", "openvino").embed(["x"])


def test_kernel_caches_are_capped_for_a_long_running_process(default_model, monkeypatch):
    """With dynamic shapes OpenVINO's kernel caches grew RSS with every new shape: the CPU plugin's cache is
    compiled with the cap, and oneDNN's is capped through its variable (set on import; the user's wins)."""
    monkeypatch.setenv("STUDIO_OPENVINO_CACHE_CAPACITY", "24")
    embedder = _studio(default_model).embedder(MODEL, "fp32", "openvino")
    session = embedder.session().session
    assert session._config["CPU_RUNTIME_CACHE_CAPACITY"] == 24  # what both compiled forms got (not read back)
    assert embedder.embed(["a short text", "and a somewhat longer one, with more tokens in it"]).shape == (2, 384)
    probe = "import os, engine.openvino_session; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    clean = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY",
                                                             "STUDIO_OPENVINO_CACHE_CAPACITY")}
    run = functools.partial(subprocess.run, [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=ROOT)
    assert run(env=clean).stdout.strip() == "32"
    assert run(env={**clean, "STUDIO_OPENVINO_CACHE_CAPACITY": "16"}).stdout.strip() == "16"
    assert run(env={**clean, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "300"}).stdout.strip() == "300"


MMAPPED_AFTER_A_BIG_FREE = """
import ctypes, sys
from engine import openvino_session
fixed = openvino_session.fix_mmap_threshold() if sys.argv[1] == "fix" else False
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(8 << 20))  # glibc's dynamic threshold rises to 8 MB here unless it is fixed
block = libc.malloc(512 << 10)
print(fixed, bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 2))  # IS_MMAPPED
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc only")
def test_the_mmap_threshold_stays_fixed_so_freed_activation_buffers_go_back_to_the_system():
    """A block of 512 KB freed after a bigger one was freed: from the heap (kept) by default, mmapped (returned
    on free) once OpenVINO sessions fixed the threshold; a user's own glibc variable wins."""
    def run(mode: str, **env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        return subprocess.run([sys.executable, "-c", MMAPPED_AFTER_A_BIG_FREE, mode], capture_output=True, text=True,
                              check=True, cwd=ROOT, env={**clean, **env}).stdout.strip()

    assert run("default") == "False False"
    assert run("fix") == "True True"
    assert run("fix", MALLOC_MMAP_THRESHOLD_="1048576") == "False False"  # the user's 1 MB: not overridden


def test_concurrent_callers_share_one_session_and_get_their_own_results(default_model, abstracts):
    """Infer requests are pooled: 4 threads x 6 calls of different shapes on one session equal sequential calls,
    small batches (the latency form, or a stream of the throughput form while another call runs) and big ones
    (split over the streams of the throughput form) mixed."""
    from engine.openvino_session import BULK_ROWS

    embedder = _studio(default_model).embedder(MODEL, "optimized", "openvino")
    jobs = [abstracts[i:i + (1 + i % 5 if i % 2 else BULK_ROWS + i)] for i in range(24)]
    assert {len(j) >= BULK_ROWS for j in jobs} == {True, False}
    expected = [embedder.embed(texts) for texts in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(embedder.embed, jobs))
    for mine, theirs in zip(got, expected):  # a small batch may run on a stream instead of the latency form:
        np.testing.assert_allclose(mine, theirs, atol=2e-3)  # bf16 rounding, far below another text's vector
    # a big batch split over the streams equals the same rows run one small batch at a time, to bf16 rounding
    big = abstracts[:2 * BULK_ROWS]
    pieces = np.concatenate([embedder.embed(big[i:i + 2]) for i in range(0, len(big), 2)])
    assert float((embedder.embed(big) * pieces).sum(axis=1).min()) >= 0.9999
    assert len(embedder.sessions.entries()) == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 200), st.integers(1, 512), st.integers(1, 8))
def test_parts_of_rows_of_one_width_cover_them_in_order_in_near_equal_parts(rows, width, streams):
    from engine.openvino_session import REQUEST_TOKENS, balanced_parts, part_count

    parts = balanced_parts([width] * rows, part_count(rows, rows * width, streams))
    assert parts[0][0] == 0 and parts[-1][1] == rows
    assert all(stop == start for (_, stop), (start, _) in zip(parts, parts[1:]))  # contiguous, in order
    sizes = [stop - start for start, stop in parts]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert len(parts) >= min(rows, streams)  # every stream gets work
    assert len(parts) % streams == 0 or len(parts) == rows  # and as many parts as the others: none idles at the end
    assert max(sizes) * width <= REQUEST_TOKENS + width or len(parts) == rows  # about a request's worth each


def _cheapest_split(widths: list[int], parts: int) -> int:
    """By brute force: the smallest possible cost of the costliest of at most ``parts`` contiguous runs."""
    import itertools

    best = None
    for count in range(1, min(parts, len(widths)) + 1):
        for cuts in itertools.combinations(range(1, len(widths)), count - 1):
            bounds = [0, *cuts, len(widths)]
            cost = max((stop - start) * widths[start] for start, stop in zip(bounds, bounds[1:]))
            best = cost if best is None else min(best, cost)
    return best


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=9).map(lambda w: sorted((8 * x for x in w), reverse=True)),
       st.integers(1, 6))
def test_balanced_parts_are_as_many_runs_in_order_whose_costliest_is_as_cheap_as_any_split(widths, parts):
    from engine.openvino_session import balanced_parts

    runs = balanced_parts(widths, parts)
    assert runs[0][0] == 0 and runs[-1][1] == len(widths) and len(runs) == min(parts, len(widths))
    assert all(stop == start for (_, stop), (start, _) in zip(runs, runs[1:])) and all(a < b for a, b in runs)
    assert max((stop - start) * widths[start] for start, stop in runs) == _cheapest_split(widths, parts)


def test_token_extents_reads_the_right_padding_off_the_mask():
    from engine.openvino_session import token_extents

    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(token_extents({"input_ids": mask, "attention_mask": mask}), [3, 1, 5, 1])
    np.testing.assert_array_equal(token_extents({"input_ids": mask}), [5, 5, 5, 5])  # no mask: every row is full
    left = np.array([[0, 0, 1], [1, 1, 1]])  # left padding: nothing to cut on the right
    np.testing.assert_array_equal(token_extents({"input_ids": left, "attention_mask": left}), [3, 3])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8192), st.sampled_from([1, 4, 8, 16]))
def test_bucket_width_rounds_up_to_the_next_step(width, step):
    from engine.openvino_session import bucket_width

    bucket = bucket_width(width, step)
    assert bucket % step == 0 and width <= bucket < width + step


def test_pad_tokens_pads_every_input_with_zeros_and_leaves_a_wide_feed_alone():
    from engine.openvino_session import _pad_tokens

    feed = {"input_ids": np.arange(6).reshape(2, 3) + 1, "attention_mask": np.ones((2, 3), np.int64)}
    padded = _pad_tokens(feed, 8)
    assert {v.shape for v in padded.values()} == {(2, 8)}
    np.testing.assert_array_equal(padded["input_ids"][:, :3], feed["input_ids"])
    assert padded["input_ids"][:, 3:].sum() == 0 and padded["attention_mask"][:, 3:].sum() == 0
    assert _pad_tokens(feed, 3) is feed


def _fresh_session(default_model):
    from engine.openvino_session import OpenVINOSession

    return OpenVINOSession(default_model / "model_optimized.onnx", threads=2, static_width=256)


def test_odd_widths_run_at_the_bucket_width_and_come_back_cut_to_their_own(default_model, abstracts):
    """Dynamic forms run widths rounded up to WIDTH_STEP (few shapes, so OpenVINO's capped kernel caches keep
    what they built): the token outputs come back at the feed's width and equal a run of the hand-padded feed,
    small batches (latency form) and bulk ones (streams) alike."""
    from engine.openvino_session import BULK_ROWS, WIDTH_STEP, _pad_tokens

    embedder = _studio(default_model).embedder(MODEL, "optimized", "openvino")
    session = _fresh_session(default_model)
    name = embedder._output_name(session)
    for rows, width in ((1, 13), (3, 37), (BULK_ROWS + 3, 61)):
        batch = embedder.tokenizer.batch(abstracts[:rows])
        feed = {k: v[:, :width] for k, v in embedder._feed(session, batch).items()}
        assert width % WIDTH_STEP
        (out,) = session.run([name], feed)
        (padded,) = session.run([name], _pad_tokens(feed, width + WIDTH_STEP - width % WIDTH_STEP))
        assert out.shape == (rows, width, 384)
        np.testing.assert_allclose(out, padded[:, :width], atol=1e-5)


def test_a_bulk_batch_of_mixed_lengths_runs_in_parts_at_their_own_widths(default_model, abstracts):
    """A bulk batch whose rows differ in length (here out of order, as no embedder batch comes) is sorted, cut into
    runs of about equal padded tokens, and each run goes at its own width: the token outputs a short run never
    computed come back as zeros (masked positions), the rows come back in their order, and every row's vector
    equals the whole batch run at its full width as one part, and each row run alone."""
    from engine.openvino_session import BULK_ROWS

    embedder = _studio(default_model).embedder(MODEL, "optimized", "openvino")
    session = _fresh_session(default_model)
    name = embedder._output_name(session)
    texts = [abstracts[i][:40 + 25 * (i % 5)] if i % 3 else abstracts[i] for i in range(BULK_ROWS + 4)]
    batch = embedder.tokenizer.batch(texts)
    feed = {k: v[:, :160] for k, v in embedder._feed(session, batch).items()}
    mask = feed["attention_mask"]
    lengths = mask.sum(axis=1)
    assert (np.diff(lengths) > 0).any() and lengths.min() < 40 < 150 < lengths.max()  # mixed, not sorted
    (split,) = session.run([name], feed)
    (whole,) = session._run_parts(session._bulk, [name], feed, [(0, len(texts))], 160)
    assert split.shape == whole.shape == (len(texts), 160, 384)
    short = int(np.argmin(lengths))
    assert not split[short, 152:].any() and whole[short, 152:].any()  # its run stopped short of the batch's width
    pooled = embedder._postprocess(split, mask, 0)
    assert float((pooled * embedder._postprocess(whole, mask, 0)).sum(axis=1).min()) >= 0.9999
    seen: list[int] = []

    def reduce(output, rows):  # what the embedder does: pool each part as it comes back
        seen.extend(np.arange(len(texts))[rows].tolist())
        return embedder._postprocess(output, mask[rows, :output.shape[1]], 0)

    reduced = session.run_reduced(name, feed, reduce)
    assert sorted(seen) == list(range(len(texts))) and seen != sorted(seen)  # every row once, in the parts' order
    np.testing.assert_allclose(reduced, pooled, atol=1e-6)  # the rows back in their order, the same vectors
    for row in (short, int(np.argmax(lengths))):
        alone = {k: v[row:row + 1, :lengths[row]] for k, v in feed.items()}
        (own,) = session.run([name], alone)
        vector = embedder._postprocess(own, alone["attention_mask"], 0)[0]
        assert float(vector @ pooled[row]) >= 0.9999


def test_a_small_batch_takes_a_stream_while_another_call_runs(default_model, abstracts):
    """Two threads of small batches on one session: while one runs, the other takes a stream of the throughput
    form (one thread) instead of waiting for the latency form's every thread; the vectors stay their own."""
    import threading

    embedder = _studio(default_model).embedder(MODEL, "optimized", "openvino")
    session = _fresh_session(default_model)
    name = embedder._output_name(session)
    feeds = [embedder._feed(session, embedder.tokenizer.batch(abstracts[i:i + 2])) for i in range(0, 40, 2)]
    expected = [session.run([name], feed)[0] for feed in feeds]
    assert session._bulk.requests.qsize() == 0  # one caller at a time: the latency form only
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(2)

    def caller(offset: int) -> None:
        start.wait()
        for _ in range(5):
            for index in range(offset, len(feeds), 2):
                got[index] = session.run([name], feeds[index])[0]

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert session._bulk.requests.qsize() >= 1  # a stream's infer request was used
    for index, vectors in enumerate(expected):
        np.testing.assert_allclose(got[index], vectors, atol=2e-3)


def test_pad_part_repeats_a_real_row_and_pads_tokens_with_mask_zero():
    from engine.openvino_session import _pad_part

    feed = {"input_ids": np.arange(15).reshape(3, 5) + 1, "attention_mask": np.ones((3, 5), np.int64)}
    part = _pad_part(feed, 1, 3, rows=4, width=8)
    assert part["input_ids"].shape == (4, 8) and part["input_ids"].flags.c_contiguous
    np.testing.assert_array_equal(part["input_ids"][:2, :5], feed["input_ids"][1:3])
    np.testing.assert_array_equal(part["input_ids"][2], part["input_ids"][1])  # a copy of the last real row
    assert part["attention_mask"][:, 5:].sum() == 0 and part["attention_mask"][:, :5].all()


def test_full_length_batches_run_on_the_static_form_and_keep_the_fp32_tier(default_model, abstracts):
    """Batches of (nearly) max_seq_length tokens run padded to it on a form compiled for that one shape; the
    rows and tokens added for the shape are cut from the outputs, and the vectors keep the fp32 tier against
    ONNX Runtime and equal the dynamic form's to bf16 rounding, for full, nearly full and odd-sized batches."""
    studio = _studio(default_model)
    embedder = studio.embedder(MODEL, "optimized", "openvino")
    session = embedder.session().session
    assert session.static_width == embedder.manifest.max_seq_length == 256
    reference = studio.embedder(MODEL, "fp32", "cpu")
    name = embedder._output_name(session)
    for texts, width in ((abstracts[:11], None), (abstracts[11:20], 240)):
        batch = embedder.tokenizer.batch(texts)
        feed = {k: (v[:, :width] if width else v) for k, v in embedder._feed(session, batch).items()}
        assert feed["input_ids"].shape[1] == (width or 256) and len(texts) % session._static.rows
        (static,) = session.run([name], feed)
        (dynamic,) = session._run_parts(session._bulk, [name], feed, [(0, len(texts))], feed["input_ids"].shape[1])
        assert static.shape == dynamic.shape == (len(texts), feed["input_ids"].shape[1], 384)
        mask = feed["attention_mask"]
        ours = embedder._postprocess(static, mask, 0)
        assert float((ours * embedder._postprocess(dynamic, mask, 0)).sum(axis=1).min()) >= 0.9999
        if width is None:
            assert float((ours * reference.embed(texts)).sum(axis=1).min()) >= 0.9999


def test_a_corrupt_onnx_file_is_a_model_error_on_openvino(default_model, tmp_path):
    import shutil

    folder = tmp_path / "models" / MODEL
    shutil.copytree(default_model, folder, symlinks=False, ignore=shutil.ignore_patterns("model_*.onnx"))
    (folder / "model.onnx").write_bytes((default_model / "model.onnx").read_bytes()[:5000])  # a cut-off download
    studio = Studio(load_settings(data_dir=tmp_path))
    with pytest.raises(ModelFileError) as caught:
        studio.embedder(MODEL, "fp32", "openvino").embed(["x"])
    assert "model.onnx" in caught.value.message and "corrupt or truncated" in caught.value.message
    assert "convert again" in caught.value.hint and f"convert {MODEL} --force" in caught.value.hint  # not "NAME"


def test_conversion_measured_the_parity_on_openvino(default_model):
    """The manifest carries each variant's parity on OpenVINO, named with the precision it ran in."""
    manifest = read_manifest(default_model)
    for variant in ("fp32", "optimized"):
        (runtime, parity), = manifest.variants[variant].provider_parity.items()
        assert runtime in ("openvino-bf16", "openvino-f32")
        assert parity.min_cosine >= 0.9999 and parity.texts == manifest.variants[variant].parity.texts
    assert manifest.variants["int8"].provider_parity  # measured too; its tier is int8's


def test_cli_embeds_on_openvino_and_lists_it(default_model, tmp_path):
    data_dir = str(default_model.parent.parent)
    source = tmp_path / "in.txt"
    source.write_text("first line\nsecond, longer line about proteins\n", encoding="utf-8")
    out = tmp_path / "out.npy"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "engine", *args, "--data-dir", data_dir], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    done = cli("embed", "--model", MODEL, "--in", str(source), "--out", str(out), "--provider", "openvino",
               "--variant", "optimized", "--json")
    assert done.returncode == 0, done.stderr
    vectors = np.load(out)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    listed = json.loads(cli("providers", "--json").stdout)
    row = next(p for p in listed["providers"] if p["name"] == "openvino")
    assert row["available"] is True
    models = json.loads(cli("models", "--json").stdout)["models"]
    parity = next(m for m in models if m["name"] == MODEL)["parity"]
    assert any(key.startswith("fp32@openvino-") for key in parity)


def test_a_part_that_fails_in_openvino_raises_instead_of_hanging_the_call(default_model, abstracts):
    """OpenVINO calls no callback for a request that failed, so a call waiting for its parts' callbacks waited
    forever (a feed whose inputs disagree hung scripts/openvino_levers.py). A failing small batch (latency form)
    and a failing bulk batch (streams) raise the runtime's error (the embedder turns it into an InferenceError),
    and the session's pooled requests serve the next calls."""
    import threading

    from engine.openvino_session import BULK_ROWS

    embedder = _studio(default_model).embedder(MODEL, "optimized", "openvino")
    session = _fresh_session(default_model)
    name = embedder._output_name(session)
    outcomes: dict[int, BaseException | None] = {}

    def run(rows: int) -> None:
        feed = embedder._feed(session, embedder.tokenizer.batch(abstracts[:rows]))
        feed = {**feed, "attention_mask": feed["attention_mask"][: rows // 2]}  # rows that disagree: OpenVINO fails
        try:
            session.run([name], feed)
            outcomes[rows] = None
        except BaseException as exc:  # noqa: BLE001 - what the call raised is the assertion
            outcomes[rows] = exc

    for rows in (2, BULK_ROWS * 2):
        caller = threading.Thread(target=run, args=(rows,), daemon=True)
        caller.start()
        caller.join(timeout=60)
        assert not caller.is_alive(), f"a failed part of {rows} rows hung the call"
        assert isinstance(outcomes[rows], RuntimeError), outcomes[rows]
    for rows in (2, BULK_ROWS * 2):  # the same session, its requests back in their pools, runs the next calls right
        texts = abstracts[:rows]
        batch = embedder.tokenizer.batch(texts)
        (out,) = session.run([name], embedder._feed(session, batch))
        vectors = embedder._postprocess(out, batch.attention_mask, 0)
        assert float((vectors * embedder.embed(texts)).sum(axis=1).min()) >= 0.9999
