"""A local stand-in for the Hugging Face hub, for tests that need no network.

It answers the requests huggingface_hub makes as huggingface.co does (read from the
installed huggingface_hub's ``utils/_http.py::hf_raise_for_status`` and
``file_download.py::get_hf_file_metadata``): files under ``/{repo}/resolve/{revision}/{path}``
(``/datasets/{repo}/...`` for datasets) with ``X-Repo-Commit`` and ``ETag`` headers; a
missing repo is 404 with ``X-Error-Code: RepoNotFound``, a gated one 401 (no token) or 403
(a token without access) with ``X-Error-Code: GatedRepo``, a missing file 404 with
``EntryNotFound``, an unknown revision 404 with ``RevisionNotFound``; a dataset's card data
comes from ``/api/datasets/{repo}``. huggingface_hub reads ``HF_ENDPOINT`` when it is
imported, so point a subprocess at ``hub.url`` through its environment.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    card: dict[str, Any] | None = None  # a dataset card's YAML, as the API serves it (cardData)

    @property
    def commit(self) -> str:
        return hashlib.sha1(json.dumps(sorted(self.files)).encode()).hexdigest()


@dataclass
class FakeHub:
    models: dict[str, Repo] = field(default_factory=dict)
    datasets: dict[str, Repo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # "METHOD path", in the order they came

    def add_model_folder(self, repo: str, folder: Path, *, gated: bool = False) -> None:
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self.models[repo] = Repo(files, gated=gated)

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
                hub._answer(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

            def log_message(self, *args: object) -> None:  # quiet: pytest shows stderr of failures
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _answer(self, request: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(request.path).path)
        self.requests.append(f"{request.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
            return self._info(request, "/".join(parts[2:4]), body=body)
        kind = self.datasets if parts[0] == "datasets" else self.models
        parts = parts[1:] if parts[0] == "datasets" else parts
        if len(parts) < 5 or parts[2] != "resolve":
            return _send(request, 404, {"X-Error-Code": "EntryNotFound"}, b"", body=body)
        name, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = kind.get(name)
        if repo is None:
            return _send(request, 404, {"X-Error-Code": "RepoNotFound"}, b"Repository not found", body=body)
        if repo.gated:
            status = 403 if request.headers.get("Authorization") else 401
            return _send(
                request, status, {"X-Error-Code": "GatedRepo"}, b"Access to this repo is restricted", body=body
            )
        if revision not in ("main", repo.commit):
            return _send(request, 404, {"X-Error-Code": "RevisionNotFound"}, b"Invalid rev id", body=body)
        commit = {"X-Repo-Commit": repo.commit}
        if filename not in repo.files:
            return _send(request, 404, {**commit, "X-Error-Code": "EntryNotFound"}, b"Entry not found", body=body)
        content = repo.files[filename]
        etag = {"ETag": f'"{hashlib.sha256(content).hexdigest()}"'}
        _send(request, 200, {**commit, **etag}, content, body=body)

    def _info(self, request: BaseHTTPRequestHandler, name: str, *, body: bool) -> None:
        repo = self.datasets.get(name)
        if repo is None:
            return _send(request, 404, {"X-Error-Code": "RepoNotFound"}, b"Repository not found", body=body)
        info = {"id": name, "sha": repo.commit, "gated": repo.gated, "cardData": repo.card or {}}
        _send(request, 200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body=body)


def _send(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], content: bytes, *, body: bool) -> None:
    request.send_response(status)
    for key, value in {**headers, "Content-Length": str(len(content))}.items():
        request.send_header(key, value)
    request.end_headers()
    if body:
        request.wfile.write(content)


def closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
