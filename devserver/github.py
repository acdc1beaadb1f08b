"""The GitHub API emulator: one GitHub App installed on three accounts (devserver/github_repos.py), in memory.

It checks what GitHub checks: the app's JWT (RS256, `iss` the app id, at most
10 minutes of life) against the public half of the key the stack put in the
local secret, and installation tokens it issued, each of which sees only its
own installation's repositories (others are 404, as on GitHub). It serves the
endpoints the app uses: installation tokens and repositories, a repository's
installation (app JWT), repositories (named in any case, as on GitHub), contents, git data (blobs, trees with
content inline or by sha, commits, refs made and deleted, with git's own object
ids) and pulls. Names are bytes, as in git: a path matches only as it is spelled
(the seed holds a name in NFD, as macOS writes it). Like GitHub, it limits the
content-creating requests (POST, PATCH, PUT, DELETE) of each installation to 80 a
minute and 500 an hour (its secondary rate limit), and answers more with a 403 and
`retry-after: 60`.

Test controls under `/_emulator/` (no auth): `POST rate-limit` {"count", "retryAfter",
"kind": "secondary"|"primary"} makes the next `count` API calls answer GitHub's
rate-limit 403; `POST fault` {"method", "path", "count", "status", "after", "delay",
"retryAfter"} makes the next `count` calls of `method path` wait `delay` seconds, then
answer `status` (a 5xx, say; 0: their own answer; with `retryAfter`, a 403 is GitHub's
secondary rate limit); with `after`, the call does its work first (GitHub made it, the
answer was slow or lost); `{"count": 0}` clears faults; `POST write-limits` {"perMinute",
"perHour"} sets the secondary limit on writes and forgets the writes counted so far;
`POST app-key` {"publicKey": PEM, "revokeTokens": true} rotates the app's key; `POST tree-limit`
{"maxEntries"} cuts every recursive tree listing to its first `maxEntries` entries with `"truncated":
true`, as GitHub cuts one past 100,000 entries or 7 MB (0: no cut); `POST blob-limit` {"maxBytes"} lowers
the largest file its API reads or writes from GitHub's 100 MB (0: back to it): a larger one is GitHub's 403
whose `errors[].code` is `too_large`;
`GET state?repo=o/r` shows refs, commits, pulls and counters (`writes`: content-creating
requests served).
"""
from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devserver.github_repos import INSTALLATIONS, SEED_FILES, Repository, seed_repositories

__all__ = ["APP_ID", "INSTALLATION_ID", "SEED_FILES", "GitHubEmulator", "installation_ids", "new_app_key",
           "provision", "secret_document"]

log = logging.getLogger("devserver.github")

APP_ID = "1001"
INSTALLATION_ID = 2002  # the one the local secret names unless DEV_GITHUB_INSTALLATION_IDS says otherwise
TOKEN_LIFETIME = 3600
INSTALLATION = web.RequestKey("installation", int)  # the installation a request's token belongs to
WRITES_PER_MINUTE, WRITES_PER_HOUR = 80, 500  # GitHub's secondary limits on content-creating requests
MAX_BLOB_BYTES = 100 * 1024 * 1024  # GitHub's API reads and writes files of at most 100 MB
_WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_APP_JWT_PATH = re.compile(r"^/app/|^/repos/[^/]+/[^/]+/installation$")  # called with the app's JWT


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"message": message, "documentation_url": "https://docs.github.com/rest"},
                             status=status, headers=headers)


def _too_large() -> web.Response:
    """GitHub's answer for a file (blob) larger than its API reads or writes."""
    return web.json_response({"message": "This API returns blobs up to 100 MB in size. The requested blob is too "
                                         "large to fetch via the API.",
                              "errors": [{"resource": "Blob", "field": "data", "code": "too_large"}],
                              "documentation_url": "https://docs.github.com/rest"}, status=403)


class GitHubEmulator:
    def __init__(self, *, public_key_pem: str, app_id: str = APP_ID) -> None:
        self.app_id = app_id
        self._public_key = public_key_pem
        self._tokens: dict[str, tuple[float, int]] = {}  # token -> (expiry, installation id)
        self._installations = {i.id: i for i in INSTALLATIONS}
        self._repos = seed_repositories()
        self._throttle: dict[str, Any] = {"count": 0, "retryAfter": 1, "kind": "secondary"}
        self._faults: list[dict[str, Any]] = []
        self._write_limits = {"perMinute": WRITES_PER_MINUTE, "perHour": WRITES_PER_HOUR}
        self._tree_limit = 0  # entries of a recursive tree listing before GitHub cuts it (0: never)
        self._blob_limit = MAX_BLOB_BYTES  # the largest file the API reads or writes
        self._writes: dict[int, collections.deque[float]] = {}  # installation -> times of its writes in the hour
        self.stats = {"jwtRefused": 0, "tokensIssued": 0, "rateLimited": 0, "requests": 0, "faults": 0, "writes": 0}

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate], client_max_size=8 * 1024 * 1024)
        r = app.router
        r.add_post("/_emulator/rate-limit", self._control_rate_limit)
        r.add_post("/_emulator/fault", self._control_fault)
        r.add_post("/_emulator/write-limits", self._control_write_limits)
        r.add_post("/_emulator/app-key", self._control_app_key)
        r.add_post("/_emulator/tree-limit", self._control_tree_limit)
        r.add_post("/_emulator/blob-limit", self._control_blob_limit)
        r.add_get("/_emulator/state", self._control_state)
        r.add_post("/app/installations/{id}/access_tokens", self._access_token)
        r.add_get("/installation/repositories", self._installation_repos)
        repo = "/repos/{owner}/{repo}"
        r.add_get(repo, self._repository)
        r.add_get(repo + "/installation", self._repository_installation)
        r.add_get(repo + "/contents/{path:.*}", self._contents)
        r.add_post(repo + "/git/blobs", self._create_blob)
        r.add_get(repo + "/git/trees/{sha}", self._tree)
        r.add_post(repo + "/git/trees", self._create_tree)
        r.add_get(repo + "/git/commits/{sha}", self._commit)
        r.add_post(repo + "/git/commits", self._create_commit)
        r.add_get(repo + "/git/ref/{ref:.+}", self._ref)
        r.add_post(repo + "/git/refs", self._create_ref)
        r.add_delete(repo + "/git/refs/{ref:.+}", self._delete_ref)
        r.add_post(repo + "/pulls", self._create_pull)
        r.add_get(repo + "/pulls", self._list_pulls)
        return app

    # --- authentication and limits --------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        self.stats["requests"] += 1
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if _APP_JWT_PATH.match(request.path):
            refusal = self._check_app_jwt(credential if scheme.lower() == "bearer" else "")
            if refusal:
                self.stats["jwtRefused"] += 1
                log.info("app JWT refused: %s", refusal)
                return _error(401, refusal)
        else:
            expiry, installation = self._tokens.get(credential, (0, 0))
            if expiry <= time.time() or scheme.lower() not in ("token", "bearer"):
                return _error(401, "Bad credentials")
            request[INSTALLATION] = installation
        if self._throttle["count"] > 0:
            self._throttle["count"] -= 1
            self.stats["rateLimited"] += 1
            wait = int(self._throttle["retryAfter"])
            if self._throttle["kind"] == "primary":
                return _error(403, f"API rate limit exceeded for installation ID {request.get('installation')}.",
                              **{"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                                 "x-ratelimit-reset": str(int(time.time()) + wait)})
            return _error(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                               "try again.", **{"retry-after": str(wait)})
        if request.method in _WRITE_METHODS and INSTALLATION in request and self._over_write_limit(request):
            self.stats["rateLimited"] += 1
            return _error(403, "You have exceeded a secondary rate limit and have been temporarily blocked from "
                               "content creation. Please retry your request again later.", **{"retry-after": "60"})
        fault = next((f for f in self._faults if (f["method"], f["path"]) == (request.method, request.path)), None)
        if fault is None:
            return await self._serve(request, handler)
        fault["count"] -= 1
        self._faults = [f for f in self._faults if f["count"] > 0]
        self.stats["faults"] += 1
        served = await self._serve(request, handler) if fault["after"] else None
        await asyncio.sleep(fault["delay"])
        if not fault["status"]:
            return served or await self._serve(request, handler)
        if fault["retryAfter"] is not None:
            return _error(fault["status"], "You have exceeded a secondary rate limit. Please wait a few minutes "
                                           "before you try again.", **{"retry-after": str(fault["retryAfter"])})
        return _error(fault["status"], "Server Error")

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in _WRITE_METHODS and INSTALLATION in request:
            self.stats["writes"] += 1
            self._writes.setdefault(request[INSTALLATION], collections.deque()).append(time.monotonic())
        return await handler(request)

    def _over_write_limit(self, request: web.Request) -> bool:
        """Whether the installation's writes of the last minute or hour reached GitHub's secondary limit."""
        writes = self._writes.setdefault(request[INSTALLATION], collections.deque())
        now = time.monotonic()
        while writes and writes[0] <= now - 3600:
            writes.popleft()
        last_minute = sum(1 for t in writes if t > now - 60)
        return last_minute >= self._write_limits["perMinute"] or len(writes) >= self._write_limits["perHour"]

    def _check_app_jwt(self, token: str) -> str | None:
        """GitHub's checks of an app JWT; the reason it is refused, or None."""
        try:
            claims = jwt.decode(token, self._public_key, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"], "verify_iat": False})
        except jwt.ExpiredSignatureError:
            return "'Expiration time' claim ('exp') must be a numeric value representing the future time"
        except jwt.PyJWTError:
            return "A JSON web token could not be decoded"
        if str(claims["iss"]) != self.app_id:
            return "'Issuer' claim ('iss') must be an Integer"
        if claims["exp"] > time.time() + 600 + 30 or claims["exp"] - claims["iat"] > 660:
            return "'Expiration time' claim ('exp') is too far in the future"
        return None

    # --- test controls --------------------------------------------------------

    async def _control_rate_limit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._throttle = {"count": int(body.get("count", 1)), "retryAfter": int(body.get("retryAfter", 1)),
                          "kind": body.get("kind", "secondary")}
        return web.json_response(self._throttle)

    async def _control_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        if int(body.get("count", 1)) <= 0:
            self._faults = []
        else:
            self._faults.append({"method": body["method"], "path": body["path"], "count": int(body.get("count", 1)),
                                 "status": int(body.get("status", 502)), "after": bool(body.get("after")),
                                 "delay": float(body.get("delay", 0)), "retryAfter": body.get("retryAfter")})
        return web.json_response({"faults": self._faults})

    async def _control_write_limits(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._write_limits = {"perMinute": int(body.get("perMinute", WRITES_PER_MINUTE)),
                              "perHour": int(body.get("perHour", WRITES_PER_HOUR))}
        self._writes.clear()
        return web.json_response(self._write_limits)

    async def _control_app_key(self, request: web.Request) -> web.Response:
        body = await request.json()
        serialization.load_pem_public_key(body["publicKey"].encode())  # refuse a bad key here, not later
        self._public_key = body["publicKey"]
        if body.get("revokeTokens", True):
            self._tokens.clear()
        log.info("app key rotated")
        return web.json_response({"rotated": True})

    async def _control_tree_limit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._tree_limit = int(body.get("maxEntries", 0))
        return web.json_response({"maxEntries": self._tree_limit})

    async def _control_blob_limit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._blob_limit = int(body.get("maxBytes", 0)) or MAX_BLOB_BYTES
        return web.json_response({"maxBytes": self._blob_limit})

    async def _control_state(self, request: web.Request) -> web.Response:
        repo = self._repos.get(request.query.get("repo", ""))
        state: dict[str, Any] = {"stats": dict(self.stats), "throttle": dict(self._throttle)}
        if repo:
            state.update(refs=dict(repo.refs), pulls=repo.pulls,
                         commits={sha: data for sha, (kind, data) in repo.objects.items() if kind == "commit"})
        return web.json_response(state)

    # --- the app and its installations -----------------------------------------

    async def _access_token(self, request: web.Request) -> web.Response:
        installation = self._installations.get(int(request.match_info["id"])) \
            if request.match_info["id"].isdigit() else None
        if installation is None:
            return _error(404, "Not Found")
        token = "ghs_" + hashlib.sha256(f"{time.time_ns()}{len(self._tokens)}".encode()).hexdigest()[:36]
        expires = time.time() + TOKEN_LIFETIME
        self._tokens[token] = (expires, installation.id)
        self.stats["tokensIssued"] += 1
        iso = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"token": token, "expires_at": iso, "permissions": {"contents": "write",
                                  "pull_requests": "write"}, "repository_selection": "selected"}, status=201)

    async def _installation_repos(self, request: web.Request) -> web.Response:
        repos = [self._describe(self._repos[name]) for name in self._installations[request[INSTALLATION]].repos]
        return web.json_response({"total_count": len(repos), "repositories": repos})

    async def _repository_installation(self, request: web.Request) -> web.Response:
        full_name = _named(request)
        owner = next((i for i in self._installations.values() if full_name in _folded(i.repos)), None)
        if owner is None:
            return _error(404, "Not Found")
        return web.json_response({"id": owner.id, "app_id": int(self.app_id), "target_type": "Organization",
                                  "account": {"login": owner.account, "type": "Organization"},
                                  "permissions": {"contents": "write", "pull_requests": "write",
                                                  "metadata": "read"}})

    def _describe(self, repo: Repository) -> dict[str, Any]:
        return {"id": abs(hash(repo.full_name)) % 10**8, "name": repo.name, "full_name": repo.full_name,
                "owner": {"login": repo.owner}, "private": repo.private, "default_branch": repo.default_branch}

    def _repo(self, request: web.Request) -> Repository:
        """The repository named in the path, if the token's installation holds it (else 404, as GitHub)."""
        full_name = _named(request)
        repo = next((r for name, r in self._repos.items() if name.casefold() == full_name), None)
        if repo is None or full_name not in _folded(self._installations[request[INSTALLATION]].repos):
            raise web.HTTPNotFound(text=json.dumps({"message": "Not Found"}), content_type="application/json")
        return repo

    # --- repository and contents ----------------------------------------------

    async def _repository(self, request: web.Request) -> web.Response:
        return web.json_response(self._describe(self._repo(request)))

    async def _contents(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        tree = repo.resolve_tree(request.query.get("ref") or repo.default_branch)
        if tree is None:
            return _error(404, f"No commit found for the ref {request.query.get('ref')}")
        path = request.match_info["path"].strip("/")
        entries = repo.walk(tree)
        if path and not any(e["path"] == path for e in entries):
            return _error(404, "Not Found")
        target = next((e for e in entries if e["path"] == path), None)
        if target is None or target["type"] == "tree":
            prefix = f"{path}/" if path else ""
            return web.json_response([
                {"type": "dir" if e["type"] == "tree" else "file", "name": e["path"].rsplit("/", 1)[-1],
                 "path": e["path"], "sha": e["sha"], "size": e.get("size", 0)}
                for e in entries if e["path"].startswith(prefix) and "/" not in e["path"][len(prefix):]])
        data = repo.objects[target["sha"]][1]
        if len(data) > self._blob_limit:
            return _too_large()
        encoded = base64.encodebytes(data).decode()  # GitHub wraps its base64 in lines too
        return web.json_response({"type": "file", "encoding": "base64", "size": len(data), "name":
                                  path.rsplit("/", 1)[-1], "path": path, "sha": target["sha"], "content": encoded})

    # --- git data -------------------------------------------------------------

    async def _create_blob(self, request: web.Request) -> web.Response:
        body = await request.json()
        content = body.get("content")
        if not isinstance(content, str):
            return _error(422, "Invalid request.\n\n\"content\" wasn't supplied.")
        data = base64.b64decode(content) if body.get("encoding") == "base64" else content.encode("utf-8")
        if len(data) > self._blob_limit:
            return _too_large()
        return web.json_response({"sha": self._repo(request).blob(data)}, status=201)

    async def _tree(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        tree = repo.resolve_tree(request.match_info["sha"])
        if tree is None:
            return _error(404, "Not Found")
        truncated = False
        if request.query.get("recursive") not in (None, "", "0", "false"):
            entries = repo.walk(tree)
            if self._tree_limit and len(entries) > self._tree_limit:
                entries, truncated = entries[:self._tree_limit], True
        else:
            entries = [e for e in repo.walk(tree) if "/" not in e["path"]]
        return web.json_response({"sha": tree, "tree": entries, "truncated": truncated})

    async def _create_tree(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        body = await request.json()
        files: dict[str, tuple[str, str]] = {}
        if body.get("base_tree"):
            if repo.resolve_tree(body["base_tree"]) != body["base_tree"]:
                return _error(422, "Invalid tree info")
            files = {e["path"]: (e["mode"], e["sha"]) for e in repo.walk(body["base_tree"]) if e["type"] != "tree"}
        for entry in body.get("tree", []):
            path = entry.get("path", "")
            if entry.get("type") != "blob" or entry.get("mode") not in ("100644", "100755", "120000"):
                return _error(422, "Invalid tree info")
            if "content" in entry:
                if len(entry["content"].encode("utf-8")) > self._blob_limit:
                    return _too_large()
                files[path] = (entry["mode"], repo.blob(entry["content"].encode("utf-8")))
            elif entry.get("sha") is None:
                files.pop(path, None)
            elif repo.objects.get(entry["sha"], ("",))[0] != "blob":
                return _error(422, "Invalid tree info: tree.sha is not a blob")
            else:
                files = {p: v for p, v in files.items() if not p.startswith(path + "/")}
                files[path] = (entry["mode"], entry["sha"])
        sha = repo.tree_from(files)
        return web.json_response({"sha": sha, "tree": repo.walk(sha), "truncated": False}, status=201)

    async def _commit(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        kind, data = repo.objects.get(request.match_info["sha"], ("", {}))
        if kind != "commit":
            return _error(404, "Not Found")
        return web.json_response(_commit_json(request.match_info["sha"], data))

    async def _create_commit(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        body = await request.json()
        parents = body.get("parents") or []
        if repo.objects.get(body.get("tree"), ("",))[0] != "tree" or \
                any(repo.objects.get(p, ("",))[0] != "commit" for p in parents):
            return _error(422, "Tree SHA and parent SHAs must be existing objects")
        sha = repo.commit(body["tree"], parents, body.get("message", ""))
        return web.json_response(_commit_json(sha, repo.objects[sha][1]), status=201)

    async def _ref(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        name = request.match_info["ref"]
        if name not in repo.refs:
            return _error(404, "Not Found")
        return web.json_response({"ref": f"refs/{name}", "object": {"sha": repo.refs[name], "type": "commit"}})

    async def _create_ref(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        body = await request.json()
        ref, sha = body.get("ref", ""), body.get("sha")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return _error(422, "Reference name must start with 'refs/' and have at least two slashes")
        if repo.objects.get(sha, ("",))[0] != "commit":
            return _error(422, "Object does not exist")
        if ref[5:] in repo.refs:
            return _error(422, "Reference already exists")
        repo.refs[ref[5:]] = sha
        return web.json_response({"ref": ref, "object": {"sha": sha, "type": "commit"}}, status=201)

    async def _delete_ref(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if repo.refs.pop(request.match_info["ref"], None) is None:
            return _error(422, "Reference does not exist")
        return web.Response(status=204)

    async def _create_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        body = await request.json()
        head, base = body.get("head"), body.get("base")
        if f"heads/{head}" not in repo.refs or f"heads/{base}" not in repo.refs:
            return _error(422, "Validation Failed")
        if repo.refs[f"heads/{head}"] == repo.refs[f"heads/{base}"]:
            return _error(422, f"No commits between {base} and {head}")
        number = len(repo.pulls) + 1
        pull = {"number": number, "title": body.get("title"), "body": body.get("body"), "state": "open",
                "html_url": f"{request.url.origin()}/{repo.full_name}/pull/{number}",
                "head": {"ref": head, "sha": repo.refs[f"heads/{head}"]}, "base": {"ref": base}}
        repo.pulls.append(pull)
        return web.json_response(pull, status=201)


    async def _list_pulls(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        owner, _, head = request.query.get("head", ":").partition(":")
        q = request.query
        return web.json_response([p for p in repo.pulls if q.get("state", "open") in (p["state"], "all") and
                                  (not q.get("head") or (owner == repo.owner and p["head"]["ref"] == head)) and
                                  (not q.get("base") or p["base"]["ref"] == q["base"])])


def _named(request: web.Request) -> str:
    """The repository a path names, as GitHub compares names: without regard to case."""
    return f"{request.match_info['owner']}/{request.match_info['repo']}".casefold()


def _folded(names: tuple[str, ...]) -> set[str]:
    return {name.casefold() for name in names}


def _commit_json(sha: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"sha": sha, "tree": {"sha": data["tree"]}, "parents": [{"sha": p} for p in data["parents"]],
            "message": data["message"]}


def new_app_key() -> tuple[str, str]:
    """A fresh RSA key for the app: (private PEM for the secret, public PEM for the emulator)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def secret_document(private_pem: str, *, app_id: str = APP_ID,
                    installation_ids: tuple[int, ...] = (INSTALLATION_ID,)) -> str:
    """The secret's JSON: `installationId` for one installation (as most deployments have), else `installationIds`."""
    ids: dict[str, Any] = {"installationId": installation_ids[0]} if len(installation_ids) == 1 else \
        {"installationIds": list(installation_ids)}
    return json.dumps({"appId": app_id, **ids, "privateKey": private_pem})


def installation_ids(value: str | None) -> tuple[int, ...]:
    """DEV_GITHUB_INSTALLATION_IDS ("2002,3003"): the installations the local secret names, each one
    the emulator holds, once; anything else stops the stack with a message naming the variable."""
    if not value or not value.strip():
        return (INSTALLATION_ID,)
    held = [installation.id for installation in INSTALLATIONS]
    try:
        ids = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise SystemExit(f"devserver: DEV_GITHUB_INSTALLATION_IDS={value!r} is not comma-separated ids "
                         f"(of {', '.join(map(str, held))})") from None
    unknown = [i for i in ids if i not in held]
    if unknown or len(set(ids)) != len(ids):
        raise SystemExit(f"devserver: DEV_GITHUB_INSTALLATION_IDS={value!r} must name distinct installations "
                         f"the GitHub emulator holds: {', '.join(map(str, held))}")
    return ids


def provision(secretsmanager: Any, secret_arn: str, *,
              installations: tuple[int, ...] = (INSTALLATION_ID,)) -> GitHubEmulator:
    """A new app key in the local secret (naming `installations`), and the emulator that trusts its public half."""
    private, public = new_app_key()
    secretsmanager.put_secret_value(SecretId=secret_arn,
                                    SecretString=secret_document(private, installation_ids=installations))
    return GitHubEmulator(public_key_pem=public)
