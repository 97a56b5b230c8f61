"""A small Hugging Face hub on 127.0.0.1 that speaks the HTTP protocol huggingface_hub uses:
``/api/models`` (search), ``/api/models/{id}[/revision/{rev}]`` (info), ``/{id}/resolve/{rev}/{file}``
(HEAD for metadata with X-Repo-Commit/ETag, GET for bytes). Serves model folders from disk, so
the real client code (engine.hub, snapshot_download, the converter) runs against it."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Repo:
    folder: Path
    sha: str
    downloads: int = 0
    pipeline_tag: str = "sentence-similarity"
    tags: tuple[str, ...] = ("sentence-transformers", "onnx")
    gated: bool = False

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file())


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head=False):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, data, status=200):
                self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _not_found(self, code="RepoNotFound", head=False):
                self._send(404, b'{"error":"Repository not found"}',
                           {"X-Error-Code": code, "Content-Type": "application/json"}, head)

            def _info(self, repo_id: str, repo: Repo) -> dict:
                return {
                    "id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False, "gated": repo.gated,
                    "downloads": repo.downloads, "likes": 1, "pipeline_tag": repo.pipeline_tag,
                    "library_name": "sentence-transformers", "tags": list(repo.tags),
                    "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
                    "siblings": [{"rfilename": f} for f in repo.files()], "config": {},
                }

            def do_GET(self) -> None:
                self._route(head=False)

            def do_HEAD(self) -> None:
                self._route(head=True)

            def _route(self, head: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                url = urlparse(self.path)
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                if parts[:2] == ["api", "models"] and len(parts) == 2:
                    query = parse_qs(url.query)
                    search = query.get("search", [""])[0].lower()
                    tag = query.get("pipeline_tag", [None])[0]
                    limit = int(query.get("limit", ["100"])[0])
                    found = [
                        self._info(rid, r) for rid, r in hub.repos.items()
                        if search in rid.lower() and (tag is None or r.pipeline_tag == tag)
                    ]
                    found.sort(key=lambda m: -m["downloads"])
                    return self._json(found[:limit])
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo_id = "/".join(parts[2:4])
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        return self._not_found()
                    return self._json(self._info(repo_id, repo))
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = hub.repos.get("/".join(parts[:2]))
                    if repo is None:
                        return self._not_found(head=head)
                    path = repo.folder / "/".join(parts[4:])
                    if not path.is_file():
                        return self._not_found("EntryNotFound", head=head)
                    body = path.read_bytes()
                    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
                    return self._send(200, body, {"X-Repo-Commit": repo.sha, "ETag": etag,
                                                  "Content-Type": "application/octet-stream"}, head)
                self._not_found()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, folder: Path, **kwargs) -> Repo:
        sha = hashlib.sha1(repo_id.encode()).hexdigest()
        self.repos[repo_id] = Repo(Path(folder), sha, **kwargs)
        return self.repos[repo_id]

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
