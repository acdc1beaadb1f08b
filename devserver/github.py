"""The GitHub API emulator: one GitHub App installation holding `octo-org/hello-world`, in memory.

It checks what GitHub checks: the app's JWT (RS256, `iss` the app id, at most
10 minutes of life) against the public half of the key the stack put in the
local secret, and installation tokens it issued. It serves the endpoints the
app uses: installation tokens and repositories, repositories, contents, git
data (blobs, trees, commits, refs, with git's own object ids) and pulls.

Test controls under `/_emulator/` (no auth): `POST rate-limit` {"count", "retryAfter",
"kind": "secondary"|"primary"} makes the next `count` API calls answer GitHub's
rate-limit 403; `POST fault` {"method", "path", "count", "status", "after", "delay"}
makes the next `count` calls of `method path` wait `delay` seconds, then answer
`status` (a 5xx, say; 0: their own answer), with `after` once the call has done its
work (GitHub made it, the answer was lost); `{"count": 0}` clears faults; `POST app-key` {"publicKey": PEM, "revokeTokens": true} rotates
the app's key; `GET state?repo=o/r` shows refs, commits, pulls and counters.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger("devserver.github")

APP_ID = "1001"
INSTALLATION_ID = 2002
TOKEN_LIFETIME = 3600
SEED_FILES = {
    "README.md": b"# hello-world\n\nA repository of the local GitHub emulator.\n",
    "src/app.py": b'def main() -> None:\n    print("hello, world")\n\n\nif __name__ == "__main__":\n    main()\n',
    "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00",
}


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"message": message, "documentation_url": "https://docs.github.com/rest"},
                             status=status, headers=headers)


@dataclass
class Repository:
    owner: str
    name: str
    default_branch: str = "main"
    private: bool = False
    objects: dict[str, tuple[str, Any]] = field(default_factory=dict)  # sha -> (type, data)
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> commit sha
    pulls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def put(self, kind: str, payload: bytes, data: Any) -> str:
        sha = hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload).hexdigest()
        self.objects[sha] = (kind, data)
        return sha

    def blob(self, content: bytes) -> str:
        return self.put("blob", content, content)

    def tree_from(self, files: dict[str, tuple[str, str]]) -> str:
        """A tree (and its subtrees) from {path: (mode, sha)} of its leaves."""
        children: dict[str, dict[str, tuple[str, str]]] = {}
        entries = []
        for path, (mode, sha) in files.items():
            head, slash, rest = path.partition("/")
            if slash:
                children.setdefault(head, {})[rest] = (mode, sha)
            else:
                entries.append({"name": head, "mode": mode, "type": "commit" if mode == "160000" else "blob",
                                "sha": sha})
        entries += [{"name": name, "mode": "040000", "type": "tree", "sha": self.tree_from(sub)}
                    for name, sub in children.items()]
        entries.sort(key=lambda e: e["name"] + ("/" if e["type"] == "tree" else ""))
        payload = b"".join(f"{e['mode'].lstrip('0')} {e['name']}".encode() + b"\0" + bytes.fromhex(e["sha"])
                           for e in entries)
        return self.put("tree", payload, entries)

    def commit(self, tree: str, parents: list[str], message: str) -> str:
        stamp = f"llm-ide-emulator <emulator@localhost> {int(time.time())} +0000"
        text = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents) + \
            f"author {stamp}\ncommitter {stamp}\n\n{message}"
        return self.put("commit", text.encode(), {"tree": tree, "parents": parents, "message": message})

    def walk(self, tree: str, prefix: str = "") -> list[dict[str, Any]]:
        """Every entry under a tree, depth first, with full paths."""
        out = []
        for entry in self.objects[tree][1]:
            path = prefix + entry["name"]
            item = {"path": path, "mode": entry["mode"], "type": entry["type"], "sha": entry["sha"]}
            if entry["type"] == "blob":
                item["size"] = len(self.objects[entry["sha"]][1])
            out.append(item)
            if entry["type"] == "tree":
                out += self.walk(entry["sha"], path + "/")
        return out

    def resolve_tree(self, ref: str) -> str | None:
        """A tree from a tree sha, a commit sha or a branch name."""
        sha = self.refs.get(f"heads/{ref}", ref)
        kind, data = self.objects.get(sha, (None, None))
        return sha if kind == "tree" else data["tree"] if kind == "commit" else None


def seed_repository() -> Repository:
    repo = Repository(owner="octo-org", name="hello-world")
    tree = repo.tree_from({path: ("100644", repo.blob(data)) for path, data in SEED_FILES.items()})
    repo.refs["heads/main"] = repo.commit(tree, [], "Initial commit\n")
    return repo


class GitHubEmulator:
    def __init__(self, *, public_key_pem: str, app_id: str = APP_ID, installation_id: int = INSTALLATION_ID) -> None:
        self.app_id = app_id
        self.installation_id = installation_id
        self._public_key = public_key_pem
        self._tokens: dict[str, float] = {}
        self._repos = {r.full_name: r for r in (seed_repository(),)}
        self._throttle = {"count": 0, "retryAfter": 1, "kind": "secondary"}
        self._faults: list[dict[str, Any]] = []
        self.stats = {"jwtRefused": 0, "tokensIssued": 0, "rateLimited": 0, "requests": 0, "faults": 0}

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate], client_max_size=8 * 1024 * 1024)
        r = app.router
        r.add_post("/_emulator/rate-limit", self._control_rate_limit)
        r.add_post("/_emulator/fault", self._control_fault)
        r.add_post("/_emulator/app-key", self._control_app_key)
        r.add_get("/_emulator/state", self._control_state)
        r.add_post("/app/installations/{id}/access_tokens", self._access_token)
        r.add_get("/installation/repositories", self._installation_repos)
        repo = "/repos/{owner}/{repo}"
        r.add_get(repo, self._repository)
        r.add_get(repo + "/contents/{path:.*}", self._contents)
        r.add_post(repo + "/git/blobs", self._create_blob)
        r.add_get(repo + "/git/trees/{sha}", self._tree)
        r.add_post(repo + "/git/trees", self._create_tree)
        r.add_get(repo + "/git/commits/{sha}", self._commit)
        r.add_post(repo + "/git/commits", self._create_commit)
        r.add_get(repo + "/git/ref/{ref:.+}", self._ref)
        r.add_post(repo + "/git/refs", self._create_ref)
        r.add_post(repo + "/pulls", self._create_pull)
        r.add_get(repo + "/pulls", self._list_pulls)
        return app

    # --- authentication and limits --------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        self.stats["requests"] += 1
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if request.path.startswith("/app/"):
            refusal = self._check_app_jwt(credential if scheme.lower() == "bearer" else "")
            if refusal:
                self.stats["jwtRefused"] += 1
                log.info("app JWT refused: %s", refusal)
                return _error(401, refusal)
        elif self._tokens.get(credential, 0) <= time.time() or scheme.lower() not in ("token", "bearer"):
            return _error(401, "Bad credentials")
        if self._throttle["count"] > 0:
            self._throttle["count"] -= 1
            self.stats["rateLimited"] += 1
            wait = int(self._throttle["retryAfter"])
            if self._throttle["kind"] == "primary":
                return _error(403, f"API rate limit exceeded for installation ID {self.installation_id}.",
                              **{"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                                 "x-ratelimit-reset": str(int(time.time()) + wait)})
            return _error(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                               "try again.", **{"retry-after": str(wait)})
        fault = next((f for f in self._faults if (f["method"], f["path"]) == (request.method, request.path)), None)
        if fault is None:
            return await handler(request)
        fault["count"] -= 1
        self._faults = [f for f in self._faults if f["count"] > 0]
        self.stats["faults"] += 1
        await asyncio.sleep(fault["delay"])
        if not fault["status"]:
            return await handler(request)
        if fault["after"]:
            await handler(request)
        return _error(fault["status"], "Server Error")

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
                                 "delay": float(body.get("delay", 0))})
        return web.json_response({"faults": self._faults})

    async def _control_app_key(self, request: web.Request) -> web.Response:
        body = await request.json()
        serialization.load_pem_public_key(body["publicKey"].encode())  # refuse a bad key here, not later
        self._public_key = body["publicKey"]
        if body.get("revokeTokens", True):
            self._tokens.clear()
        log.info("app key rotated")
        return web.json_response({"rotated": True})

    async def _control_state(self, request: web.Request) -> web.Response:
        repo = self._repos.get(request.query.get("repo", ""))
        state: dict[str, Any] = {"stats": dict(self.stats), "throttle": dict(self._throttle)}
        if repo:
            state.update(refs=dict(repo.refs), pulls=repo.pulls,
                         commits={sha: data for sha, (kind, data) in repo.objects.items() if kind == "commit"})
        return web.json_response(state)

    # --- the app and its installation ------------------------------------------

    async def _access_token(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != str(self.installation_id):
            return _error(404, "Not Found")
        token = "ghs_" + hashlib.sha256(f"{time.time_ns()}{len(self._tokens)}".encode()).hexdigest()[:36]
        expires = time.time() + TOKEN_LIFETIME
        self._tokens[token] = expires
        self.stats["tokensIssued"] += 1
        iso = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"token": token, "expires_at": iso, "permissions": {"contents": "write",
                                  "pull_requests": "write"}, "repository_selection": "selected"}, status=201)

    async def _installation_repos(self, request: web.Request) -> web.Response:
        repos = [self._describe(r) for r in self._repos.values()]
        return web.json_response({"total_count": len(repos), "repositories": repos})

    def _describe(self, repo: Repository) -> dict[str, Any]:
        return {"id": abs(hash(repo.full_name)) % 10**8, "name": repo.name, "full_name": repo.full_name,
                "owner": {"login": repo.owner}, "private": repo.private, "default_branch": repo.default_branch}

    def _repo(self, request: web.Request) -> Repository:
        repo = self._repos.get(f"{request.match_info['owner']}/{request.match_info['repo']}")
        if repo is None:
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
        return web.json_response({"sha": self._repo(request).blob(data)}, status=201)

    async def _tree(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        tree = repo.resolve_tree(request.match_info["sha"])
        if tree is None:
            return _error(404, "Not Found")
        if request.query.get("recursive") not in (None, "", "0", "false"):
            entries = repo.walk(tree)
        else:
            entries = [e for e in repo.walk(tree) if "/" not in e["path"]]
        return web.json_response({"sha": tree, "tree": entries, "truncated": False})

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
        kind, data = repo.objects.get(request.match_info["sha"], (None, None))
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


def secret_document(private_pem: str, *, app_id: str = APP_ID, installation_id: int = INSTALLATION_ID) -> str:
    return json.dumps({"appId": app_id, "installationId": installation_id, "privateKey": private_pem})


def provision(secretsmanager: Any, secret_arn: str) -> GitHubEmulator:
    """A new app key in the local secret, and the emulator that trusts its public half."""
    private, public = new_app_key()
    secretsmanager.put_secret_value(SecretId=secret_arn, SecretString=secret_document(private))
    return GitHubEmulator(public_key_pem=public)
