"""Signing in with Cognito, keeping the tokens, renewing and revoking them.

Sign-in is SRP (`USER_SRP_AUTH`, by pycognito's AWSSRP, as Cognito's own SDKs do): the
password never leaves the machine. The refresh token then renews the access token before it
expires (`REFRESH_TOKEN_AUTH`), for as long as Cognito accepts it (the app client's
refresh-token validity, 30 days by default); `logout` revokes it (`RevokeToken`).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from filelock import FileLock, Timeout
from pycognito.aws_srp import AWSSRP
from pycognito.exceptions import ForceChangePasswordException, MFAChallengeException

MFA_CHALLENGES = ("SOFTWARE_TOKEN_MFA", "SMS_MFA")
MFA_ATTEMPTS = 3  # a mistyped code is asked again, as Cognito lets a session try a few times
REFRESH_MARGIN_SECONDS = 60  # renew this long before expiry (at most half the token's lifetime)
# How long a change of the token file waits for another llm-ide process's (each holds it for a read and a write of a
# few hundred bytes, milliseconds; the OS releases it when its process dies, so only a hung process outlasts this).
TOKEN_LOCK_TIMEOUT_SECONDS = 10.0


class LoginFailed(Exception):
    """Cognito refused the sign-in; the message says why in Cognito's words."""


class NotSignedIn(Exception):
    """No usable sign-in for this API: never signed in, logged out, or the refresh token refused."""


class UnreadableTokens(NotSignedIn):
    """The file of sign-ins cannot be read or is not one llm-ide wrote (cut short, edited by hand)."""


class TokenFileBusy(Exception):
    """Another llm-ide process held the token file's lock too long: the sign-in is still there, so this is not
    NotSignedIn (a bridge that took it for a logout would cancel its chats); try again."""


@dataclass(frozen=True)
class UserPool:
    """The Cognito app client to sign in with. `endpoint_url` None: the real Cognito of `region`."""
    client_id: str
    region: str
    user_pool_id: str | None = None  # needed by SRP (its name is part of the proof)
    endpoint_url: str | None = None

    def cognito(self) -> Any:
        # Unsigned: these Cognito calls authenticate with the user's secrets, not AWS credentials.
        return boto3.client("cognito-idp", region_name=self.region, endpoint_url=self.endpoint_url,
                            config=Config(signature_version=UNSIGNED, connect_timeout=5, read_timeout=10,
                                          retries={"mode": "standard", "max_attempts": 3}))


@dataclass(frozen=True)
class Tokens:
    username: str
    access_token: str
    id_token: str
    refresh_token: str | None
    expires_at: int  # epoch seconds, when the access and ID tokens expire
    issued_at: int = 0  # epoch seconds; 0 in files written before it was kept

    def token(self, token_use: str = "access") -> str:
        return self.access_token if token_use == "access" else self.id_token

    def expired(self, margin: float = 0.0, now: float | None = None) -> bool:
        return (time.time() if now is None else now) + margin >= self.expires_at

    def refresh_due(self, now: float | None = None) -> bool:
        """True when the access token expires within the refresh margin (capped at half its lifetime)."""
        lifetime = self.expires_at - self.issued_at if self.issued_at else 2 * REFRESH_MARGIN_SECONDS
        return self.expired(min(REFRESH_MARGIN_SECONDS, lifetime / 2), now)

    @classmethod
    def from_result(cls, username: str, result: dict[str, Any], refresh_token: str | None = None) -> Tokens:
        now = int(time.time())
        return cls(username=username, access_token=result["AccessToken"], id_token=result["IdToken"],
                   refresh_token=result.get("RefreshToken") or refresh_token,
                   expires_at=now + int(result["ExpiresIn"]), issued_at=now)


class Challenges(Protocol):
    """Answers Cognito's challenges during sign-in (the terminal asks the person)."""

    def new_password(self, username: str) -> str: ...

    def mfa_code(self, username: str, challenge: str, attempt: int) -> str: ...


def _failure(exc: ClientError) -> LoginFailed:
    error = exc.response.get("Error", {})
    return LoginFailed(f"{error.get('Code', 'error')}: {error.get('Message', '')}")


def sign_in(username: str, password: str, pool: UserPool, challenges: Challenges | None = None) -> Tokens:
    """SRP sign-in; NEW_PASSWORD_REQUIRED and MFA codes are asked of `challenges`.

    Raises LoginFailed (wrong password, unknown user, a challenge nobody answers, ...).
    """
    if not pool.user_pool_id:
        raise LoginFailed("SRP sign-in needs the user pool id (LLM_IDE_USER_POOL_ID or --user-pool-id)")
    cognito = pool.cognito()
    srp = AWSSRP(username=username, password=password, pool_id=pool.user_pool_id, client_id=pool.client_id,
                 client=cognito)
    try:
        try:
            response = srp.authenticate_user()
        except ForceChangePasswordException:
            if challenges is None:
                raise LoginFailed("Cognito asks for a new password (NEW_PASSWORD_REQUIRED)") from None
            response = srp.set_new_password_challenge(challenges.new_password(username))
        except MFAChallengeException as exc:
            response = exc.get_tokens()
        response = _answer_mfa(cognito, pool, username, response, challenges)
    except ClientError as exc:
        raise _failure(exc) from None
    except BotoCoreError as exc:
        raise LoginFailed(f"cannot reach Cognito: {exc}") from None
    except NotImplementedError as exc:  # pycognito: a first challenge other than PASSWORD_VERIFIER
        raise LoginFailed(str(exc)) from None
    if "AuthenticationResult" not in response:
        raise LoginFailed(f"Cognito asks for a challenge this client does not answer: {response.get('ChallengeName')}")
    return Tokens.from_result(username, response["AuthenticationResult"])


def _answer_mfa(cognito: Any, pool: UserPool, username: str, response: dict[str, Any],
                challenges: Challenges | None) -> dict[str, Any]:
    challenge = response.get("ChallengeName")
    if challenge not in MFA_CHALLENGES:
        return response
    if challenges is None:
        raise LoginFailed(f"Cognito asks for a one-time code ({challenge})")
    user_id = response.get("ChallengeParameters", {}).get("USER_ID_FOR_SRP", username)
    for attempt in range(1, MFA_ATTEMPTS + 1):
        code = challenges.mfa_code(username, challenge, attempt).strip()
        try:
            return cognito.respond_to_auth_challenge(
                ClientId=pool.client_id, ChallengeName=challenge, Session=response["Session"],
                ChallengeResponses={"USERNAME": user_id, f"{challenge}_CODE": code})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "CodeMismatchException" or attempt == MFA_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def refresh(tokens: Tokens, pool: UserPool) -> Tokens:
    """New access and ID tokens from the refresh token. Raises NotSignedIn when Cognito refuses it."""
    if not tokens.refresh_token:
        raise NotSignedIn("this sign-in has no refresh token: run `llm-ide login`")
    try:
        response = pool.cognito().initiate_auth(ClientId=pool.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                                                AuthParameters={"REFRESH_TOKEN": tokens.refresh_token})
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NotAuthorizedException", "UserNotFoundException", "ResourceNotFoundException"):
            raise NotSignedIn(f"the sign-in of {tokens.username} has expired or was revoked:"
                              " run `llm-ide login`") from None
        raise
    return Tokens.from_result(tokens.username, response["AuthenticationResult"], tokens.refresh_token)


def revoke(tokens: Tokens, pool: UserPool) -> None:
    """Revoke the refresh token (Cognito RevokeToken): it can renew nothing any more."""
    if tokens.refresh_token:
        pool.cognito().revoke_token(Token=tokens.refresh_token, ClientId=pool.client_id)


class TokenStore:
    """Tokens per API and user in one file readable only by its owner.

    A sign-in is kept under every name it is known by (the API's URL, the Cognito app client),
    and found under the first name given: the API's URL when there is one, else the app client.
    A token is only ever offered to an API it was saved for: never "the latest" to any URL, and
    not one saved for another URL that shares the app client (`--url` elsewhere with the same
    endpoints file), which could hand a token to a server that is not the one it was meant for.
    """

    def __init__(self, path: Path | None = None) -> None:
        home = Path(os.environ.get("LLM_IDE_HOME") or Path.home() / ".llm-ide")
        self.path = path or home / "tokens.json"
        # Every change is a read, a change and a write of the whole file, and several llm-ide processes change it (a
        # CLI command's login or logout, a running `llm-ide serve`'s renewals): each change holds this lock across
        # processes (flock; msvcrt.locking on Windows), so none is lost to another's write of what it read before.
        self._lock = FileLock(self.path.with_name(f"{self.path.name}.lock"), timeout=TOKEN_LOCK_TIMEOUT_SECONDS,
                              mode=0o600)

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the file's lock for one read-modify-write. TokenFileBusy when another process keeps it too long."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with self._lock:
                yield
        except Timeout:
            raise TokenFileBusy(f"{self._lock.lock_file} has been held by another llm-ide process for over"
                                   f" {TOKEN_LOCK_TIMEOUT_SECONDS:g} s: try again, or stop the process that"
                                   " hangs") from None

    def version(self) -> tuple[int, int, int] | None:
        """The file's (inode, mtime in ns, size), None without one: it differs after every change (each write
        replaces the file with a new one), so a watcher learns of a login or logout with one stat, not a read."""
        try:
            found = self.path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    def _read(self, *, afresh_if_unreadable: bool = False) -> dict[str, Any]:
        """The sign-ins the file holds ({} without one). A file that is not such a JSON object (cut short, edited
        by hand) is UnreadableTokens, or, with `afresh_if_unreadable` (a new sign-in about to replace it), {}."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UnreadableTokens(f"cannot read {self.path}: {exc.strerror}") from None
        except ValueError as exc:
            if afresh_if_unreadable:
                return {}
            raise UnreadableTokens(f"{self.path} is not a token file of llm-ide ({exc}): run `llm-ide login` "
                                   "to sign in again") from None
        if not isinstance(data, dict) or not all(isinstance(entry, dict) for entry in data.values()):
            if afresh_if_unreadable:
                return {}
            raise UnreadableTokens(f"{self.path} is not a token file of llm-ide: run `llm-ide login` to sign in "
                                   "again")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        tmp.replace(self.path)

    @staticmethod
    def _names(apis: str | list[str | None]) -> list[str]:
        return [a for a in ([apis] if isinstance(apis, str) else apis) if a]

    def save(self, apis: str | list[str | None], tokens: Tokens) -> None:
        with self._changing():
            data = self._read(afresh_if_unreadable=True)
            for api in self._names(apis):
                entry = data.setdefault(api, {})
                if not isinstance(entry.get("users"), dict):
                    entry["users"] = {}
                entry["current"] = tokens.username
                entry["users"][tokens.username] = asdict(tokens)
            self._write(data)

    def renewed(self, apis: str | list[str | None], old: Tokens, new: Tokens) -> bool:
        """Save `new`, renewed from `old`, under each name where `old`'s sign-in is still kept: not where another
        command forgot it (`llm-ide logout`) or a new sign-in of the user replaced it while Cognito renewed it,
        and with the current user left as it is (a login as another user meanwhile stays current). Whether it
        was saved anywhere."""
        with self._changing():
            data = self._read()
            saved = False
            for api in self._names(apis):
                users = data.get(api, {}).get("users")
                stored = users.get(old.username) if isinstance(users, dict) else None
                if isinstance(stored, dict) and stored.get("refresh_token") == old.refresh_token:
                    users[old.username] = asdict(new)
                    saved = True
            if saved:
                self._write(data)
            return saved

    def load(self, apis: str | list[str | None], username: str | None = None) -> Tokens | None:
        """The sign-in kept under the first of these names (for `username`, if given), else None."""
        names = self._names(apis)
        return self._found(self._read(), names[0], username) if names else None

    def _found(self, data: dict[str, Any], api: str, username: str | None) -> Tokens | None:
        entry = data.get(api, {})
        users, name = entry.get("users"), username or entry.get("current")
        stored = users.get(name) if isinstance(users, dict) and isinstance(name, str) else None
        if not stored:
            return None
        known = {f.name for f in fields(Tokens)}
        try:
            return Tokens(**{k: v for k, v in stored.items() if k in known})
        except (AttributeError, TypeError):  # not an object, or fields missing
            raise UnreadableTokens(f"the sign-in kept in {self.path} is incomplete: run `llm-ide login` "
                                   "to sign in again") from None

    def forget(self, apis: str | list[str | None], username: str | None = None) -> Tokens | None:
        """Forget `username`'s sign-in (by default the current user's of the first name) under every name: what
        `llm-ide logout` does. The sign-in that was kept under the first name; None, and nothing changed, when there
        is none there (a sign-in forgotten elsewhere would be left unrevoked)."""
        names = self._names(apis)
        with self._changing():
            data = self._read()
            found = self._found(data, names[0], username) if names else None
            if found is None:  # nothing kept under the first name: nothing forgotten (nor left unrevoked)
                return None
            username = found.username
            for api in names:
                entry = data.get(api)
                if entry is None:
                    continue
                entry.get("users", {}).pop(username, None)
                if entry.get("current") == username:
                    entry["current"] = next(iter(entry.get("users", {})), None)
                if not entry.get("users"):
                    del data[api]
            self._write(data)
            return found


class SignedIn:
    """One API's signed-in user, with tokens kept fresh: what every command and the bridge use.

    `tokens()` renews the access token when it is about to expire, saves the new tokens (unless
    another command signed the user out meanwhile: then NotSignedIn), and raises NotSignedIn when
    there is nothing to renew with. Thread-safe: one refresh at a time.
    """

    def __init__(self, store: TokenStore, apis: list[str | None], pool: UserPool | None,
                 username: str | None = None, *, renew: Callable[[Tokens, UserPool], Tokens] = refresh) -> None:
        self._store, self._apis, self._pool, self._username = store, apis, pool, username
        self._renew = renew
        self._lock = threading.Lock()

    def tokens(self, *, force_refresh: bool = False) -> Tokens:
        with self._lock:
            tokens = self._load()
            if force_refresh or tokens.refresh_due():
                if self._pool is None:
                    raise NotSignedIn("the token has expired and no Cognito app client is configured to renew it:"
                                      " run `llm-ide login`")
                renewed = self._renew(tokens, self._pool)
                if not self._store.renewed(self._apis, tokens, renewed):
                    # Another command signed this user out (or in afresh) while Cognito renewed: it has the
                    # last word, and a logout is not undone by writing the renewed tokens back.
                    return self._load()
                tokens = renewed
            return tokens

    def _load(self) -> Tokens:
        tokens = self._store.load(self._apis, self._username)
        if tokens is None:
            raise NotSignedIn("not signed in to this API: run `llm-ide login` (with the same --url or"
                              " --client-id as this command)")
        return tokens

    def username(self) -> str:
        """Who is signed in now, as the token file says: no renewal, so no call to Cognito. NotSignedIn without one."""
        return self._load().username

    def save(self, tokens: Tokens) -> None:
        with self._lock:
            self._store.save(self._apis, tokens)

    def version(self) -> tuple[int, int, int] | None:
        """The token file's version (TokenStore.version): when it changes, the sign-in may have."""
        return self._store.version()

    def token_source(self, token_use: str = "access") -> Callable[[bool], tuple[str, float]]:
        """`(token, expires_at)` for a connection, renewed when forced or due: an IdeClient's `Reconnect.tokens`."""
        def tokens(force_refresh: bool) -> tuple[str, float]:
            current = self.tokens(force_refresh=force_refresh)
            return current.token(token_use), float(current.expires_at)

        return tokens

    def forget(self) -> Tokens | None:
        with self._lock:
            return self._store.forget(self._apis, self._username)


def login(username: str, password: str, *, client_id: str, region: str, user_pool_id: str | None = None,
          endpoint_url: str | None = None, challenges: Challenges | None = None) -> Tokens:
    """SRP sign-in with keyword settings: what tests and benchmarks script against."""
    return sign_in(username, password, UserPool(client_id=client_id, region=region, user_pool_id=user_pool_id,
                                                endpoint_url=endpoint_url), challenges)
