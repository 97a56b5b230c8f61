"""Bad input at the command line, as a user types it: every wrong value is refused by argparse (exit 2, one
line, no traceback) before a model loads; ``embed --in`` splits on ``\\n`` only and checks JSONL types;
``embed --out`` writes exactly the path given; the upload limit holds for pipes and devices, read with a cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import read_texts, split_lines
from engine.documents import read_limited
from engine.errors import DocumentLimitError, InputError

ROOT = __import__("conftest").ROOT


def run(*args: str, data_dir: Path | None = None, env: dict | None = None, stdin=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    if data_dir is not None:
        environment["STUDIO_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=300, stdin=stdin)


# --- argument values ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-args") / "t.txt"
    path.write_text("one\ntwo\n")
    return path


BAD_ARGUMENTS = [
    (["embed", "--in", "{txt}", "--out", "{tmp}/o.npy", "--batch-size", "0"], "--batch-size"),
    (["embed", "--in", "{txt}", "--out", "{tmp}/o.npy", "--batch-size", "-3"], "--batch-size"),
    (["embed", "--in", "{txt}", "--out", "{tmp}/o.npy", "--batch-size", "many"], "--batch-size"),
    (["embed", "--in", "{txt}", "--out", "{tmp}/o.npy", "--dimensions", "0"], "--dimensions"),
    (["embed", "--in", "{tmp}", "--out", "{tmp}/o.npy"], "--in"),
    (["embed", "--in", "{tmp}/missing.txt", "--out", "{tmp}/o.npy"], "--in"),
    (["embed", "--in", "{txt}", "--out", "{tmp}"], "--out"),
    (["embed", "--in", "{txt}", "--out", "{tmp}/no/such/folder/o.npy"], "--out"),
    (["bench", "--batch-sizes", "0"], "--batch-sizes"),
    (["bench", "--batch-sizes", "1,-8"], "--batch-sizes"),
    (["bench", "--batch-sizes", "x"], "--batch-sizes"),
    (["bench", "--variants", "nope"], "--variants"),
    (["bench", "--peers", "st-torch,nope"], "--peers"),
    (["bench", "--peers", "st-torch", "--configs", "int9:cpu"], "--configs"),
    (["bench", "--peers", "st-torch", "--configs", "int8:gpu"], "--configs"),
    (["bench", "--peers", "st-torch", "--workloads", "msmarco"], "--workloads"),
    (["bench", "--peers", "st-torch", "--rounds", "0"], "--rounds"),
    (["bench", "--texts", "0"], "--texts"),
    (["check", "--variants", "fp32,nope"], "--variants"),
    (["convert", "m", "--variants", "fp64"], "--variants"),
    (["chunk-eval", "{txt}", "--per-page", "-1"], "--per-page"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--port", "-1"], "--port"),
    (["serve", "--workers", "0"], "--workers"),
    (["serve", "--keep-alive", "-5"], "--keep-alive"),
    (["search", "--collection", "c", "q", "--k", "0"], "--k"),
    (["ingest", "{txt}", "--collection", "c", "--chunk-size", "0"], "--chunk-size"),
    (["ingest", "{txt}", "--collection", "c", "--chunk-overlap", "-1"], "--chunk-overlap"),
    (["eval", "--dataset", "{tmp}/nope"], "--dataset"),
    (["eval", "--dataset", "{tmp}", "--batch-size", "0"], "--batch-size"),
    (["ocr", "{tmp}"], "file"),
    (["ocr-bench", "--max-pages", "0"], "--max-pages"),
    (["ocr-bench", "--dpi", "5000"], "--dpi"),
    (["delete", "--collection", "c", "doc.pdf", "--all"], "--all"),
    (["delete", "--collection", "c"], "document"),
]


@pytest.mark.parametrize(("argv", "named"), BAD_ARGUMENTS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_ARGUMENTS])
def test_a_wrong_argument_value_is_one_line_and_exit_2(argv, named, texts_file, tmp_path):
    args = [a.format(txt=texts_file, tmp=tmp_path) for a in argv]
    result = run(*args, data_dir=tmp_path / "data")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and named in lines[0], lines[0]
    assert "Traceback" not in result.stderr and not result.stdout


# --- embed --in -------------------------------------------------------------------------------------------
def test_lines_end_at_newline_only():
    raw = "a\u2028b\nc\u2029d\ne\x85f\x0bg\x0ch\x1ci\x1dj\x1ek\r\nlast"
    assert split_lines(raw) == ["a\u2028b", "c\u2029d", "e\x85f\x0bg\x0ch\x1ci\x1dj\x1ek", "last"]
    assert split_lines("x\n\ny\n") == ["x", "", "y"]  # a blank line is kept as an (empty) text
    assert split_lines("") == []


def test_read_texts_keeps_unicode_separators_inside_a_line(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo \u2028 still two\nthree \u2029 still three\n", encoding="utf-8")
    assert read_texts(source) == ["one", "two \u2028 still two", "three \u2029 still three"]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"text": "a\u2028b"}, ensure_ascii=False) + "\n" + json.dumps({"text": "c"}) + "\n")
    assert read_texts(jsonl) == ["a\u2028b", "c"]


@pytest.mark.parametrize(("content", "words"), [
    ('{"text": "a"}\n{"text": null}\n', ":2: 'text' is null"),
    ('{"text": "a"}\n{"text": 5}\n', ":2: 'text' is int"),
    ('{"text": "a"}\n{"txt": "b"}\n', ":2 is not a JSON object with a 'text' field"),
    ('{"text": "a"}\n[1, 2]\n', ":2 is not a JSON object with a 'text' field"),
    ('{"text": "a"}\n{oops\n', ":2 is not valid JSON"),
    ('{"text": "a"}\n\n{"text": "b"}\n', ":2 is blank"),
    ('{"text": "a\\ud800b"}\n', ":1 holds a lone surrogate (U+D800)"),
    ("", "is empty"),
])
def test_jsonl_records_are_checked_and_named_by_line(tmp_path, content, words):
    source = tmp_path / "in.jsonl"
    source.write_text(content)
    with pytest.raises(InputError) as caught:
        read_texts(source)
    assert words in caught.value.message and str(source) in caught.value.message


def test_a_text_file_that_looks_like_jsonl_says_so_and_can_be_read_as_text(tmp_path):
    """A plain text file whose first line starts with '{' was read as JSONL, and its error only said "line 1 is not
    valid JSON". The hint now says the format was guessed and how to choose it; --format text reads it as lines."""
    from engine.cli import read_input

    source = tmp_path / "notes.txt"
    source.write_text("{curly} braces open this line\nsecond line\n", encoding="utf-8")
    with pytest.raises(InputError, match="is not valid JSON") as caught:
        read_texts(source)
    assert "read as JSONL because its first line starts with '{'" in caught.value.hint
    assert "--format text" in caught.value.hint
    assert read_input(source, form="text") == (["{curly} braces open this line", "second line"], "text")
    with pytest.raises(InputError) as chosen:  # chosen, not guessed: no word about guessing
        read_input(source, form="jsonl")
    assert "guess" not in chosen.value.hint and "first line starts" not in chosen.value.hint
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "a"}\n', encoding="utf-8")
    assert read_input(jsonl) == (["a"], "jsonl") and read_input(jsonl, form="text") == (['{"text": "a"}'], "text")


def test_not_utf8_names_the_line(tmp_path):
    source = tmp_path / "latin1.txt"
    source.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(InputError, match=r"latin1.txt:2 is not UTF-8"):
        read_texts(source)


def test_embed_end_to_end_one_vector_per_line_written_exactly(default_model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("first\nsecond \u2028 part of the second\nthird \u2029 and \x85 too\n", encoding="utf-8")
    out = tmp_path / "vectors_dir"  # no .npy suffix: written exactly as named (np.save would add one)
    result = run("embed", "--in", str(source), "--out", str(out), "--json", data_dir=default_model.parent.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 3
    assert out.is_file() and not (tmp_path / "vectors_dir.npy").exists()
    assert np.load(out).shape == (3, 384)


def test_embed_reads_the_standard_input_as_dash_and_refuses_dash_as_the_output(default_model, tmp_path):
    """`--in -` said "- does not exist" (only /dev/stdin worked); `--out -` wrote a file named '-' in the current
    folder. Now '-' reads the pipe, and as the output it is refused before anything loads."""
    out = tmp_path / "piped.npy"
    with open(tmp_path / "stdin.txt", "w+", encoding="utf-8") as pipe:
        pipe.write("alpha\nbeta\n")
        pipe.seek(0)
        result = run("embed", "--in", "-", "--out", str(out), "--json", data_dir=default_model.parent.parent, stdin=pipe)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 2 and np.load(out).shape == (2, 384)
    refused = run("embed", "--in", "-", "--out", "-", data_dir=default_model.parent.parent, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "'-' is not a file name here" in refused.stderr
    assert not (ROOT / "-").exists()


def test_embed_lone_surrogate_and_null_are_clear_errors(default_model, tmp_path):
    data_dir = default_model.parent.parent
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "fine"}\n{"text": "a\\udc80b"}\n')
    result = run("embed", "--in", str(source), "--out", str(tmp_path / "o.npy"), data_dir=data_dir)
    assert result.returncode == 2 and "bad.jsonl:2 holds a lone surrogate" in result.stderr, result.stderr
    source.write_text('{"text": "fine"}\n{"text": null}\n')
    result = run("embed", "--in", str(source), "--out", str(tmp_path / "o.npy"), data_dir=data_dir)
    assert result.returncode == 2 and "'text' is null" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o.npy").exists()


# --- limits while reading ---------------------------------------------------------------------------------
def test_read_limited_refuses_a_device_after_limit_plus_one_bytes():
    with pytest.raises(DocumentLimitError, match="larger than the limit of 1 MB"):
        read_limited("/dev/zero", 1024 * 1024)


def test_read_limited_reads_a_pipe_under_the_limit_and_refuses_one_over(tmp_path):
    read_end, write_end = os.pipe()
    payload = os.urandom(300_000)
    pid = os.fork()
    if pid == 0:  # the writer: a real pipe, whose size stat() cannot tell
        os.close(read_end)
        with os.fdopen(write_end, "wb") as sink:
            sink.write(payload)
        os._exit(0)
    os.close(write_end)
    try:
        assert read_limited(f"/proc/self/fd/{read_end}", 300_000) == payload
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(DocumentLimitError, match="big.bin is 0.0 MB"):
        read_limited(big, 1024)
    assert read_limited(big, 2048) == b"x" * 2048


def test_ingest_refuses_an_endless_device_with_little_memory(default_model, tmp_path):
    """`ingest /dev/zero` used to grow until the kernel killed it; now it stops after the limit."""
    result = run("ingest", "/dev/zero", "--collection", "c", data_dir=default_model.parent.parent,
                 env={"STUDIO_MAX_UPLOAD_MB": "5"})
    assert result.returncode == 1, result.stderr
    assert "zero is larger than the limit of 5 MB" in result.stdout, result.stdout


@pytest.mark.skipif(not Path("/usr/bin/time").exists(), reason="needs GNU time for the peak RSS")
def test_refusing_a_250_mb_pipe_stays_under_300_mb(default_model, tmp_path):
    """The issue's figure: a 250 MB pipe with STUDIO_MAX_UPLOAD_MB=200 is refused below 300 MB peak RSS."""
    feeder = subprocess.Popen(["head", "-c", str(250 * 1000 * 1000), "/dev/zero"], stdout=subprocess.PIPE)
    environment = {**os.environ, "STUDIO_DATA_DIR": str(default_model.parent.parent), "STUDIO_MAX_UPLOAD_MB": "200"}
    result = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "engine", "ingest", "/dev/stdin",
                             "--collection", "pipe"], stdin=feeder.stdout, cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    feeder.stdout.close()
    feeder.wait()
    assert result.returncode == 1 and "larger than the limit of 200 MB" in result.stdout, result.stdout + result.stderr
    peak_kb = next(int(line.split()[-1]) for line in result.stderr.splitlines() if "Maximum resident" in line)
    print(f"peak RSS refusing a 250 MB pipe: {peak_kb / 1024:.0f} MB")
    assert peak_kb < 300 * 1024, peak_kb


def test_search_with_a_query_that_is_not_utf8_is_a_clear_error(tmp_path):
    """Bytes that are not UTF-8 reach Python's argv as lone surrogates; the tokenizer used to crash on them."""
    environment = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "engine", "search", "--collection", "c", b"a\xed\xa0\x80b"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "The query holds a lone surrogate" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    result = run("collections", "--data-dir", str(tmp_path / "f"))
    assert result.returncode == 2 and "--data-dir" in result.stderr and "is a file" in result.stderr


def test_eval_reports_the_time_it_spent_embedding(default_model, tmp_path):
    """``engine eval`` embeds the corpus and queries itself (for --vectors-cache) and ranks afterwards: the seconds
    it reports include that embedding (they read 0.0 when only the ranking was timed)."""
    docs = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"document {i} about topic {i % 3} " * 20} for i in range(40)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), "utf-8")
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"topic {i}"}) + "\n"
                                                    for i in range(3)), "utf-8")
    (tmp_path / "qrels-test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n"
                                                                                      for i in range(3)), "utf-8")
    result = run("eval", "--dataset", str(tmp_path), "--model", "all-minilm-l6-v2", "--variant", "fp32",
                 "--provider", "cpu", "--json", data_dir=default_model.parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["documents"] == 40 and report["queries"] == 3
    assert report["seconds_corpus"] > 0 and report["seconds_queries"] >= 0


def test_a_bug_in_a_command_is_a_message_not_a_traceback(monkeypatch, capsys):
    """main() caught only StudioError: any bug in a command printed Python's traceback (e.g. MuPDF's RuntimeError on
    a page tree claiming 10**9 pages, before that was handled)."""
    from engine import cli

    def broken(args):
        raise RuntimeError("code=7: Invalid number of pages")

    name = "collections"
    cli._load_commands()
    monkeypatch.setitem(cli.COMMANDS, name, (*cli.COMMANDS[name][:2], broken))
    assert cli.main([name]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeError: code=7" in err and "hint: run it again with -v" in err


def test_a_text_of_millions_of_characters_is_refused_by_line(tmp_path):
    """One 50 MB line took 84 s and 6.9 GB of memory to tokenize (and aborted with no message under a memory
    limit), for the few hundred tokens a model embeds of it."""
    from engine.cli import MAX_TEXT_CHARS, read_input

    source = tmp_path / "long.txt"
    source.write_text("short line\n" + "word " * (MAX_TEXT_CHARS // 5 + 1) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"long.txt:2 holds 1,000,005 characters"):
        read_input(source)
    (tmp_path / "fits.txt").write_text("word " * (MAX_TEXT_CHARS // 5), encoding="utf-8")
    assert len(read_input(tmp_path / "fits.txt")[0][0]) == MAX_TEXT_CHARS
