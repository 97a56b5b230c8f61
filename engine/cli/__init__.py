"""``python -m engine``: the studio from the command line. Every subcommand takes ``--json``.

Errors print a message and a hint (or a JSON object with ``--json``) and exit with status 2;
no traceback reaches the user.

The package, one module per command group (each registers its commands on import):
``__init__`` (the entry point and the model commands: providers, models, convert, embed),
``documents`` (ingest, search, collections, delete, check-collection, eval, chunk-eval), ``ocr``,
``bench``, ``checks`` and ``service`` (serve); ``args`` holds the argument types argparse checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine import __version__
from engine.cli import args as cliargs
from engine.errors import InputError, StudioError
from engine.manifest import VARIANT_CHOICES
from engine.textcheck import check_encodable

log = logging.getLogger(__name__)
Handler = Callable[[argparse.Namespace], tuple[object, str]]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help_text, configure, handler)
        return handler

    return register


def _studio(args: argparse.Namespace):
    from engine.settings import load_settings
    from engine.studio import Studio

    return Studio(load_settings(data_dir=args.data_dir))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- providers ------------------------------------------------------------------------------------
@command("providers", "execution providers ONNX Runtime offers here, and what auto picks", lambda p: None)
def cmd_providers(args: argparse.Namespace) -> tuple[object, str]:
    import onnxruntime as ort

    from engine import providers

    rows = providers.status()
    data = {
        "onnxruntime": ort.__version__,
        "device": ort.get_device(),
        "auto": providers.resolve("auto").name,
        "cpu_threads": providers.cpu_count(),
        "providers": [r.__dict__ for r in rows],
        "warnings": providers.diagnostics(),
    }
    text = _table(
        [[r.name, r.ort_name, "yes" if r.available else "no", "<- auto" if r.auto_candidate else "", r.note] for r in rows],
        ["provider", "onnxruntime name", "available", "", "note"],
    )
    warnings = "".join(f"\nwarning: {w}" for w in data["warnings"])
    return data, f"onnxruntime {ort.__version__} ({ort.get_device()}), {data['cpu_threads']} CPU threads\n{text}{warnings}"


# --- models ---------------------------------------------------------------------------------------
def _model_row(spec, studio) -> dict:
    manifest = spec.manifest
    parity = {}
    if manifest is not None:
        for name, info in manifest.variants.items():
            if info.parity is not None:
                parity[name] = {"max_abs_diff": info.parity.max_abs_diff, "min_cosine": info.parity.min_cosine}
            for runtime, figures in info.provider_parity.items():  # e.g. fp32@openvino-bf16
                parity[f"{name}@{runtime}"] = {"max_abs_diff": figures.max_abs_diff, "min_cosine": figures.min_cosine}
    return {
        "name": spec.name,
        "hf_id": spec.hf_id,
        "converted": spec.converted,
        "curated": spec.curated,
        "dim": manifest.dim if manifest else spec.dim,
        "pooling": list(manifest.pooling_modes if manifest else spec.pooling),
        "normalize": manifest.normalize if manifest else spec.normalize,
        "max_seq_length": manifest.max_seq_length if manifest else spec.max_seq_length,
        "variants": list(manifest.variants) if manifest else list(spec.variants),
        "parity": parity,
        "default_variant": spec.default_variant,
        "auto_variant": _auto_row(studio.remembered_variant(spec)),
        "description": spec.description,
        "folder": str(spec.folder),
    }


def _auto_row(result) -> dict | None:
    """What ``auto`` chose on this machine and provider, where it was measured already."""
    return None if result is None else {"provider": result.runs_on, "chosen": result.chosen, "seconds": result.seconds,
                                        "excluded": result.excluded, "probe_parity": result.parity,
                                        "measured_at": result.measured_at}


@command("models", "the model registry and which models are converted", lambda p: None)
def cmd_models(args: argparse.Namespace) -> tuple[object, str]:
    studio = _studio(args)
    rows = [_model_row(spec, studio) for spec in studio.registry.list()]
    default = studio.registry.default_model
    text = _table(
        [[r["name"] + (" *" if r["name"] == default else ""), "yes" if r["converted"] else "no", r["dim"],
          "+".join(r["pooling"]), r["max_seq_length"], ",".join(r["variants"]),
          f"{r['parity']['fp32']['min_cosine']:.6f}" if "fp32" in r["parity"] else "-"] for r in rows],
        ["model (* default)", "converted", "dim", "pooling", "max len", "variants", "fp32 min cos"],
    )
    return {"default": default, "models": rows}, text


# --- convert --------------------------------------------------------------------------------------
def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registry name, Hugging Face id (owner/name) or local folder")
    p.add_argument("--name", help="name for the converted model (default: from the id)")
    p.add_argument("--variants", type=cliargs.variant_list,
                   help="comma list of fp32,optimized,fp16,int8 (default: the registry's)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code")
    p.add_argument("--force", action="store_true", help="replace an existing conversion")


@command("convert", "convert a model to ONNX (runs the converter in its own process)", _convert_args)
def cmd_convert(args: argparse.Namespace) -> tuple[object, str]:
    from engine import conversion

    studio = _studio(args)
    variants = tuple(args.variants) if args.variants else None
    request = conversion.plan(studio.registry, args.model, args.name, variants, args.trust_remote_code, args.force)

    def progress(step: str, fraction: float) -> None:
        if not args.json:
            print(f"\r[{fraction * 100:3.0f}%] {step:<60}", end="", file=sys.stderr, flush=True)

    result = conversion.run(request, studio.settings.models_dir, progress)
    if not args.json:
        print(file=sys.stderr)
    lines = [f"converted {request.source} -> {result['out']} in {result['conversion_seconds']:.1f}s"]
    for variant, info in result["variants"].items():
        figures = (f"max|diff| {info['max_abs_diff']:.2e}  min cosine {info['min_cosine']:.7f}"
                   if "min_cosine" in info else "not validated")
        lines.append(f"  {variant:11s} {info['size_bytes'] / 1e6:8.1f} MB  {figures}")
    lines += [f"  note: {n}" for n in result.get("notes", [])]
    return result, "\n".join(lines)


# --- embed ----------------------------------------------------------------------------------------
def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name (default: the registry's default)")
    p.add_argument("--in", dest="input", required=True, type=cliargs.input_file,
                   help="UTF-8 text file, one text per line (lines end at \\n only; a blank line is an empty text), "
                        "or JSONL with a string 'text' field; - reads the standard input")
    p.add_argument("--format", choices=INPUT_FORMATS, default="auto",
                   help="how --in is read: text (one text per line), jsonl, or auto (JSONL when the first line "
                        "starts with '{'; default)")
    p.add_argument("--out", required=True, type=cliargs.output_file,
                   help="output file, written exactly as named (.npy format: float32, input order); its folder must exist")
    p.add_argument("--provider", help="auto, cpu, cuda, tensorrt, ... (default: STUDIO_PROVIDER or auto)")
    p.add_argument("--variant", choices=VARIANT_CHOICES)
    p.add_argument("--prompt-name", help="a prompt of the model, e.g. query or document")
    p.add_argument("--dimensions", type=cliargs.positive_int, help="Matryoshka: keep this many dimensions (re-normalised)")
    p.add_argument("--batch-size", type=cliargs.positive_int, help="texts per inference call")


def split_lines(raw: str) -> list[str]:
    """Lines that end at ``\\n`` and nowhere else (U+2028, U+2029, U+0085, \\v, \\f stay inside the text, unlike
    ``str.splitlines``); a final ``\\n`` ends the last line rather than starting an empty one, and a ``\\r``
    before the ``\\n`` (Windows line endings) is dropped."""
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


INPUT_FORMATS = ("auto", "text", "jsonl")
MAX_TEXT_CHARS = 1_000_000  # one text of embed --in: 30 times the HTTP API's 32,768
_GUESSED = "; it was read as JSONL because its first line starts with '{': --format text embeds every line as it is"


def _json_text(path: Path, number: int, line: str, also: str = "") -> str:
    """The 'text' of one JSONL line; ``also`` ends every hint (why the file was read as JSONL, when guessed)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # arrays nested 100,000 deep are no JSON this reads either
        raise InputError(f"{path}:{number} is not valid JSON.",
                         f"each line must be a JSON object like {{\"text\": \"...\"}}{also}") from None
    if not isinstance(record, dict) or "text" not in record:
        raise InputError(f"{path}:{number} is not a JSON object with a 'text' field.",
                         f"each line must be a JSON object like {{\"text\": \"...\"}}{also}")
    text = record["text"]
    if not isinstance(text, str):
        kind = "null" if text is None else type(text).__name__
        raise InputError(f"{path}:{number}: 'text' is {kind}, not a string.", f"give every record a text to embed{also}")
    return text


def input_format(lines: list[str], form: str = "auto") -> str:
    """"text" or "jsonl": ``form`` unless it is "auto", then JSONL when the first line starts with '{'."""
    if form != "auto":
        return form
    return "jsonl" if lines and lines[0].lstrip().startswith("{") else "text"


def read_texts(path: Path, max_bytes: int | None = None, form: str = "auto") -> list[str]:
    return read_input(path, max_bytes, form)[0]


def read_input(path: Path, max_bytes: int | None = None, form: str = "auto") -> tuple[list[str], str]:
    """(texts, "text" or "jsonl"): the texts of an ``embed --in`` file, in order: one per line, or JSONL objects
    with a 'text' field (``form``; "auto": JSONL when the first line starts with '{', and an error then says that
    the format was guessed and how to choose). Nothing is skipped, so row N of the output is always line N:
    a blank line of a text file is the empty text (embedded as such); in JSONL a blank line, a record without
    a string 'text' (null, a number) or a lone surrogate anywhere is an InputError naming the line."""
    from engine.documents import read_limited

    data = read_limited(path, max_bytes, what="input file")
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line} is not UTF-8 text.", "save the file as UTF-8") from None
    if raw.startswith("\ufeff"):  # a byte-order mark some editors write
        raw = raw[1:]
    lines = split_lines(raw)
    if not lines:
        raise InputError(f"The input file {path} is empty.", "put one text per line")
    read_as = input_format(lines, form)
    jsonl = read_as == "jsonl"
    also = _GUESSED if form == "auto" else ""
    texts = []
    for number, line in enumerate(lines, 1):
        if jsonl and not line.strip():
            raise InputError(f"{path}:{number} is blank, not a JSON object.",
                             f"remove blank lines from JSONL: row N of the output is line N{also}")
        text = _json_text(path, number, line, also) if jsonl else line
        if len(text) > MAX_TEXT_CHARS:  # one 50 MB line took 84 s and 6.9 GB to tokenize, for its first tokens
            raise InputError(f"{path}:{number} holds {len(text):,} characters; a text may hold {MAX_TEXT_CHARS:,}.",
                             "split it into passages (a model embeds each text's first max_seq_length tokens, "
                             "a few hundred words)")
        texts.append(check_encodable(text, f"{path}:{number}"))
    return texts, read_as


def write_npy(path: Path, vectors: np.ndarray) -> None:
    """``vectors`` in .npy format at exactly ``path`` (np.save given a name would append '.npy')."""
    try:
        with open(path, "wb") as handle:
            np.save(handle, vectors)
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror or exc}.", "check the path and the folder's permissions"
                         ) from None


@command("embed", "embed texts from a file into a .npy array", _embed_args)
def cmd_embed(args: argparse.Namespace) -> tuple[object, str]:
    studio = _studio(args)
    texts, form = read_input(args.input, studio.settings.max_upload_bytes, args.format)
    embedder = studio.embedder(args.model, args.variant, args.provider).with_batching(args.batch_size)
    embedder.session()  # load and warm up before the clock starts
    started = time.perf_counter()
    vectors = embedder.embed(texts, prompt_name=args.prompt_name, dimensions=args.dimensions)
    seconds = time.perf_counter() - started
    write_npy(args.out, vectors.astype(np.float32))
    info = embedder.info()
    data = {**info, "count": len(texts), "format": form, "dim": int(vectors.shape[1]), "out": str(args.out),
            "seconds": round(seconds, 3), "texts_per_second": round(len(texts) / seconds, 1) if seconds else None}
    fallback = f"\nwarning: {info['fallback']}" if info["fallback"] else ""
    read = "JSONL records" if form == "jsonl" else "lines"
    return data, (f"{len(texts)} texts ({read}) -> {args.out} ({vectors.shape[0]}x{vectors.shape[1]} float32) with "
                  f"{info['model']}/{info['variant']} on {info['provider']} in {seconds:.2f}s{fallback}")


# --- entry point ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = cliargs.OneLineParser(prog="python -m engine", description="ONNX Embedding Studio engine")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("--data-dir", type=cliargs.data_folder, help="data directory (default: STUDIO_DATA_DIR or ./data)")
    common.add_argument("--log-json", action="store_true", help="log as JSON lines on stderr")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=cliargs.OneLineParser)
    for name, (help_text, configure, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        configure(p)
    return parser


def _load_commands() -> None:
    """Subcommands of other modules register themselves on import."""
    import importlib

    for module in ("engine.cli.documents", "engine.cli.ocr", "engine.cli.bench", "engine.cli.checks", "engine.cli.service",
                   "engine.cli.search"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: list[str] | None = None) -> int:
    _load_commands()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # an argument error of a --json command prints the JSON error object too (parse_args exits 2 on it)
    cliargs.JSON_ERRORS = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    from engine import log as studio_log
    from engine.settings import get_settings

    try:
        settings = get_settings()
        level = "DEBUG" if args.verbose else settings.log_level
        studio_log.configure(level, json_lines=args.log_json or settings.log_json)
        data, text = COMMANDS[args.command][2](args)
    except StudioError as exc:
        if getattr(args, "json", False):
            print(json.dumps(exc.to_dict()))
        else:
            print(f"error: {exc.message}", file=sys.stderr)
            if exc.hint:
                print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: a clean message, the traceback only with -v
        logging.getLogger("engine.cli").debug("python -m engine %s failed", args.command, exc_info=True)
        error = StudioError(f"python -m engine {args.command} failed on an unexpected error "
                              f"({type(exc).__name__}: {str(exc)[:200]}).",
                              "run it again with -v to see where, and please report it")
        if getattr(args, "json", False):
            print(json.dumps(error.to_dict()))
        else:
            print(f"error: {error.message}\nhint: {error.hint}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    elif text:
        print(text)
    return getattr(args, "exit_status", 0)
