"""Argument types for ``python -m engine``: every value is checked by argparse itself, so a wrong one
ends the command at once with exit status 2 and one line naming the argument, before any model loads.

Each function takes the raw string and returns the parsed value or raises
``argparse.ArgumentTypeError`` (argparse then says ``argument --x: <message>``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

from engine.manifest import VARIANTS

JSON_ERRORS = False  # set by engine.cli.main when --json is on the command line


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line (``error: ...; see --help``), not the usage dump;
    with ``--json`` on the command line it is the JSON object every other error prints, on stdout (exit 2 either way)."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        if JSON_ERRORS:
            import json

            from engine.errors import InputError

            print(json.dumps(InputError(f"{self.prog}: {message}", f"see {self.prog} --help").to_dict()), flush=True)
            self.exit(2)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high] (high None: no upper bound)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: it must be {span}")
        return value

    parse.__name__ = "number"  # argparse names the type in its 'invalid <type> value' fallback
    return parse


positive_int = int_range(1)
non_negative_int = int_range(0)
port = int_range(0, 65535)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def unit_float(text: str) -> float:
    """A number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be between 0 and 1")
    return value


def search_language(text: str) -> str:
    """A keyword-search language the collections support (en, de, ..., none)."""
    from engine.errors import InputError
    from engine.keyword_index import check_language

    try:
        return check_language(text.strip().lower())
    except InputError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message.rstrip('.')}: {exc.hint}") from None


MIN_CHUNK_SIZE = 8


def chunk_settings(text: str) -> list[tuple[int, int, bool]]:
    """chunk-eval's comma list of SIZE:OVERLAP[:h]: '96:16,128:16:h' -> [(96, 16, False), (128, 16, True)];
    the size at least 8 tokens, the overlap smaller than the size."""
    settings = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        parts = item.split(":")
        try:
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "h"):
                raise ValueError
            size, overlap = int(parts[0]), int(parts[1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not SIZE:OVERLAP[:h], e.g. 128:16") from None
        if size < MIN_CHUNK_SIZE:
            raise argparse.ArgumentTypeError(f"{item!r}: the size must be at least {MIN_CHUNK_SIZE} tokens")
        if not 0 <= overlap < size:
            raise argparse.ArgumentTypeError(f"{item!r}: the overlap must be at least 0 and smaller than the size")
        settings.append((size, overlap, len(parts) == 3))
    if not settings:
        raise argparse.ArgumentTypeError("give at least one SIZE:OVERLAP, e.g. 128:16")
    return list(dict.fromkeys(settings))


def int_list(low: int = 1, high: int | None = None) -> Callable[[str], list[int]]:
    """A comma list of whole numbers in range: '1, 8,32' -> [1, 8, 32] (duplicates dropped)."""
    item = int_range(low, high)

    def parse(text: str) -> list[int]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError("give at least one number, e.g. 1,32")
        return list(dict.fromkeys(item(part) for part in parts))

    parse.__name__ = "list"
    return parse


def choice_list(choices: Iterable[str]) -> Callable[[str], list[str]]:
    """A comma list whose items must each be one of ``choices``."""
    allowed = tuple(choices)

    def parse(text: str) -> list[str]:
        items = [part.strip().lower() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"give at least one of {', '.join(allowed)}")
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}: choose from {', '.join(allowed)}")
        return list(dict.fromkeys(items))

    parse.__name__ = "list"
    return parse


variant_list = choice_list(VARIANTS)


def input_file(text: str) -> Path:
    """A file that exists and is not a folder (pipes and devices are allowed: they are read with a limit); ``-`` is
    the standard input."""
    if text == "-":
        if not Path("/dev/stdin").exists():
            raise argparse.ArgumentTypeError("reading the standard input ('-') needs /dev/stdin; give a file")
        return Path("/dev/stdin")
    path = Path(text)
    try:  # Python 3.11's exists() raises where a folder on the way may not be searched (EACCES)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text} does not exist")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text} cannot be reached: {exc.strerror or exc}") from None
    return path


def output_file(text: str) -> Path:
    """A file path to write exactly: not a folder, and its folder must already exist."""
    if not text or text.endswith(("/", "\\")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a file name")
    if text == "-":  # written as a file named '-' before; the summary goes to the standard output
        raise argparse.ArgumentTypeError("'-' is not a file name here: the vectors are a .npy file; give one, "
                                         "e.g. vectors.npy")
    path = Path(text)
    try:
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name, e.g. {path / 'vectors.npy'}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"the folder {path.parent} does not exist; create it first")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text} cannot be reached: {exc.strerror or exc}") from None
    return path


def data_folder(text: str) -> Path:
    """The data folder: it may not exist yet (it is created on first write), but it cannot be a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return path


def folder_to_create(text: str) -> Path:
    """A folder that may not exist yet (it is created when written to), but is not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; give a folder (it is created if missing)")
    return path


def input_folder(text: str) -> Path:
    """A folder that exists."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder" if path.exists() else f"{text} does not exist")
    return path


def config_list(text: str) -> list:
    """Our benchmark configurations, a comma list of VARIANT[:PROVIDER]: 'int8, optimized:cpu'."""
    from engine.errors import InputError
    from engine.measure.peers import OurConfig
    from engine.providers import PROVIDER_NAMES

    configs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            config = OurConfig.parse(part.lower())
        except InputError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
        if config.variant not in VARIANTS:
            raise argparse.ArgumentTypeError(f"{part!r}: unknown variant {config.variant!r}: choose from {', '.join(VARIANTS)}")
        if config.provider not in (*PROVIDER_NAMES, "auto"):
            raise argparse.ArgumentTypeError(f"{part!r}: unknown provider {config.provider!r}: "
                                             f"choose from auto, {', '.join(PROVIDER_NAMES)}")
        configs.append(config)
    if not configs:
        raise argparse.ArgumentTypeError("give at least one VARIANT[:PROVIDER], e.g. int8:cpu")
    return list(dict.fromkeys(configs))
