"""The miner serves exactly the files it committed, so validators need no third party.

``GET /v1/model/manifest`` answers the manifest of the committed folder (every file the digest
covers, with its size and sha256; signed like every plain response), ``GET
/v1/model/files/<sha256>`` the file with that hash, with HTTP range requests (206, 416) so a
validator resumes a broken transfer. Both need btauth/1 from a caller the policy admits
(validators with a permit, rate-limited per hotkey, as for completions), and transfers hold one
of ``miner.model_transfers`` slots (stake-ordered queue) for as long as they stream, so
downloads never crowd out answers. The manifest is computed once at startup: a file is served
only by the hash it had then, so a file changed on disk afterwards reaches a validator as a
digest mismatch, never as a silently different model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from distill.manifest import Manifest
from neurons.miner.app import admit
from neurons.miner.errors import HttpError
from neurons.miner.policy import PriorityLimiter
from subnet import protocol

_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class ModelFiles:
    """The committed folder, its manifest, and the limiter transfers queue on."""

    root: Path
    manifest: Manifest
    transfers: PriorityLimiter
    timeout: float = 3600.0  # seconds a transfer may wait for a slot

    def path_of(self, sha256: str) -> Path | None:
        entry = self.manifest.by_sha(sha256)
        return None if entry is None else self.root / entry.path


FILES = web.AppKey("model_files", ModelFiles)


class _SentFile(web.FileResponse):
    """A file response sent inside the handler (so the transfer slot is held while it
    streams): aiohttp prepares a returned response again, which must then do nothing."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


def add_routes(app: web.Application, files: ModelFiles) -> None:
    """Serve ``files`` from an app made by :func:`neurons.miner.app.build_app`."""
    app[FILES] = files
    app.router.add_get(protocol.MODEL_MANIFEST_PATH, manifest)
    app.router.add_get(protocol.MODEL_FILE_PATH, model_file)


async def manifest(request: web.Request) -> web.Response:
    await admit(request, b"")
    body = protocol.dumps(request.app[FILES].manifest.to_json())
    return web.Response(body=body, content_type="application/json")


async def model_file(request: web.Request) -> web.StreamResponse:
    info = await admit(request, b"")
    files = request.app[FILES]
    sha = request.match_info["sha256"]
    path = files.path_of(sha) if _SHA.match(sha) else None
    if path is None:
        raise HttpError(404, "not_found", "no committed file has that sha256")
    if not path.is_file():
        raise HttpError(404, "not_found", "the committed file is gone from disk")
    await files.transfers.acquire(info.stake, timeout=files.timeout)
    try:
        resp = _SentFile(path, headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)  # streams the file (or the asked range) before returning
        return resp
    finally:
        files.transfers.release()
