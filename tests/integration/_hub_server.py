"""A local HTTP server that serves a model repo the way the Hugging Face Hub does, for the real
``huggingface_hub`` client (pointed at it with its ``endpoint``/``HF_ENDPOINT``).

Only what a pinned-revision download uses: the tree listing ``GET
/api/models/<repo>/tree/<revision>?recursive=..`` (file entries with ``oid``, ``size`` and, for
``*.safetensors``, the ``lfs`` block of an LFS pointer), and ``HEAD``/``GET
/<repo>/resolve/<revision>/<path>`` answered with ``X-Repo-Commit``, ``ETag`` (the LFS sha256,
or the git blob id), ``X-Linked-Size``/``X-Linked-Etag`` for LFS files and HTTP ranges. Any
other revision is a 404 with ``X-Error-Code: RevisionNotFound``, as on the hub. Every request is
recorded (method, path) so a test can check what the client asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    revision: str  # 40-hex commit
    folder: Path  # the files served (every file under it, README and all)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def entry(self, path: Path) -> dict[str, object]:
        data = path.read_bytes()
        rel = path.relative_to(self.folder).as_posix()
        out: dict[str, object] = {
            "type": "file",
            "oid": _git_blob_id(data),
            "size": len(data),
            "path": rel,
        }
        if rel.endswith(".safetensors"):
            out["lfs"] = {
                "oid": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": 134,
            }
        return out


def hub_app(repo: HubRepo) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: object) -> web.StreamResponse:
        repo.requests.append((request.method, request.path))
        return await handler(request)  # type: ignore[operator, no-any-return]

    def not_found(code: str) -> web.Response:
        return web.Response(status=404, headers={"X-Error-Code": code}, text=code)

    async def tree(request: web.Request) -> web.Response:
        if request.match_info["rev"] != repo.revision:
            return not_found("RevisionNotFound")
        return web.json_response([repo.entry(p) for p in repo.files()])

    async def resolve(request: web.Request) -> web.StreamResponse:
        if request.match_info["rev"] != repo.revision:
            return not_found("RevisionNotFound")
        path = repo.folder / request.match_info["path"]
        if not path.is_file():
            return not_found("EntryNotFound")
        meta = repo.entry(path)
        lfs = meta.get("lfs")
        etag = lfs["oid"] if isinstance(lfs, dict) else meta["oid"]
        headers = {"X-Repo-Commit": repo.revision, "ETag": f'"{etag}"'}
        if lfs:
            headers |= {"X-Linked-Size": str(meta["size"]), "X-Linked-Etag": f'"{etag}"'}
        if request.method == "HEAD":
            headers["Content-Length"] = str(meta["size"])
            return web.Response(headers=headers)
        resp = web.FileResponse(path, headers=headers)
        return resp

    app = web.Application(middlewares=[record])
    base = f"/{repo.repo_id}"
    app.router.add_get(f"/api/models{base}/tree/{{rev}}", tree)
    app.router.add_route("HEAD", f"{base}/resolve/{{rev}}/{{path:.+}}", resolve)
    app.router.add_get(f"{base}/resolve/{{rev}}/{{path:.+}}", resolve, allow_head=False)
    return app


@contextlib.asynccontextmanager
async def serve_hub(repo: HubRepo) -> AsyncIterator[str]:
    """The hub on 127.0.0.1:<free port>; yields its endpoint URL."""
    runner = web.AppRunner(hub_app(repo), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
