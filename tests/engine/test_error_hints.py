"""Every StudioError that engine/ constructs carries a hint (what to do next), unless ALLOWED says why not.

The UI, the CLI (``error: ... / hint: ...``) and the HTTP API (``{"error", "message", "hint"}``) all show the
hint. The scan reads the source: a call ``Name(...)`` is an error construction when ``Name`` is bound in that
file (a ``from engine... import``, anywhere in the file, or a class statement) to a StudioError subclass. The
hint is the ``hint`` keyword or the positional argument at ``hint``'s place in the class's ``__init__``
(third for RequestError, whose second is ``param``; second otherwise); an empty string, a ``*args`` the scan
cannot see into, or a class whose ``__init__`` takes no hint count as none.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StudioError

ENGINE = Path(__file__).resolve().parents[2] / "engine"

# (file under engine/, enclosing function, error class) -> why those constructions need no hint: the error never
# reaches a user with its hint (each re-wrapping checked by grep), or the scan cannot see the hint that is there.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("collection.py", "Collection._read_file", "_SegmentGone"):
        "internal: Collection._reading retries with a newer manifest or raises Collection._damaged (which has a "
        "hint); collection_check._check_document turns it into its own problem text",
    ("collection.py", "Collection._view", "_SegmentGone"):
        "internal: only called inside Collection._reading, which retries or raises Collection._damaged",
    ("sessions.py", "_openvino_session", "ModelFileError"):
        "the hint is there, unpacked from _CORRUPT (message, hint), which this scan cannot see into",
    ("measure/bench.py", "run_http.call", "StudioError"):
        "internal: run_http runs only inside bench._measured, which keeps exc.message in the report row",
    ("measure/peer_env/__init__.py", "PeerProcess._ask", "PeerError"):
        "internal: PeerProcess.load/run are called only by measure/peers.py, which keeps exc.message in the "
        "backend's report row",
}


@dataclass(frozen=True)
class Site:
    file: str  # relative to engine/
    function: str  # dotted: Class.method, outer.inner; <module> at the top level
    error: str
    line: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.function, self.error)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _bindings(tree: ast.Module, module: str) -> dict[str, tuple[str, str]]:
    """Name -> (module, attribute) for what a file imports from engine (at any depth) or defines as a class."""
    names: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("engine"):
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.ClassDef):
            names[node.name] = (module, node.name)
    return names


def _error_class(origin: tuple[str, str] | None) -> type[StudioError] | None:
    if origin is None:
        return None
    found = getattr(importlib.import_module(origin[0]), origin[1], None)
    return found if inspect.isclass(found) and issubclass(found, StudioError) else None


def _is_empty(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == ""


def has_hint(call: ast.Call, error: type[StudioError]) -> bool:
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return False  # *args / **kwargs: the scan cannot tell
    keyword = next((k.value for k in call.keywords if k.arg == "hint"), None)
    if keyword is not None:
        return not _is_empty(keyword)
    params = [p for p in inspect.signature(error.__init__).parameters][1:]  # without self
    if "hint" not in params or len(call.args) <= params.index("hint"):
        return False
    return not _is_empty(call.args[params.index("hint")])


def _walk(node: ast.AST, scope: tuple[str, ...]):
    """(enclosing scope, node) for every node below ``node``."""
    for child in ast.iter_child_nodes(node):
        yield scope, child
        inner = scope + (child.name,) if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
            else scope
        yield from _walk(child, inner)


def hintless_sites(root: Path = ENGINE) -> list[Site]:
    sites = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bindings = _bindings(tree, _module_name(path))
        for scope, node in _walk(tree, ()):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            error = _error_class(bindings.get(node.func.id))
            if error is not None and not has_hint(node, error):
                sites.append(Site(path.relative_to(root).as_posix(), ".".join(scope) or "<module>", node.func.id,
                                  node.lineno))
    return sites


def test_every_studio_error_in_the_engine_has_a_hint_or_a_reason():
    missing = [s for s in hintless_sites() if s.key not in ALLOWED]
    assert not missing, "StudioErrors without a hint (add one, or a reason to ALLOWED):\n" + "\n".join(
        f"  engine/{s.file}:{s.line} {s.function}: {s.error}" for s in missing)


def test_every_allowlist_entry_still_names_a_hintless_construction():
    found = {s.key for s in hintless_sites()}
    assert not [key for key in ALLOWED if key not in found]
    assert all(reason.strip() for reason in ALLOWED.values())


def test_the_scan_sees_positional_keyword_and_empty_hints():
    tree = ast.parse("InputError('m')\nInputError('m', 'h')\nInputError('m', hint='h')\nInputError('m', '')\n"
                     "RequestError('m', 'param')\nRequestError('m', 'param', 'h')\nStorageError('m', 'h')\n")
    from engine.errors import InputError, RequestError, StorageError

    classes = {"InputError": InputError, "RequestError": RequestError, "StorageError": StorageError}
    seen = [has_hint(n, classes[n.func.id]) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert seen == [False, True, True, False, False, True, True]


def test_the_scan_ignores_classes_that_only_share_a_name():
    # engine/ocr/vlm_protocol.py has its own RequestError (a plain Exception of the VLM server's HTTP answers)
    sites = hintless_sites()
    assert not [s for s in sites if s.file in ("ocr/vlm_protocol.py", "ocr/vlm_server.py") and s.error == "RequestError"]
