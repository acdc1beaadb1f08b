"""The one definition of the data resources: tables, buckets and secrets.

Both the CDK app (``infra/``) and the local stack (``devserver/``) build from
this module, so a key or index changed here changes everywhere. It is plain
data: importing it costs nothing and needs neither CDK nor boto3.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PROJECT = "llm-ide"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = "S"  # DynamoDB scalar type: S, N or B


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: Attribute
    sort_key: Attribute | None = None


@dataclass(frozen=True)
class Table:
    key: str  # short name, also the suffix of the physical name
    env_var: str  # the app reads the physical name from this variable
    partition_key: Attribute
    sort_key: Attribute | None = None
    ttl_attribute: str | None = "ttl"
    indexes: tuple[Index, ...] = field(default_factory=tuple)

    def physical_name(self, stage: str) -> str:
        return f"{PROJECT}-{stage}-{self.key}"

    def attributes(self) -> list[Attribute]:
        """Every attribute used in a key of the table or of an index."""
        seen: dict[str, Attribute] = {}
        for attr in (self.partition_key, self.sort_key):
            if attr:
                seen[attr.name] = attr
        for index in self.indexes:
            for attr in (index.partition_key, index.sort_key):
                if attr:
                    seen[attr.name] = attr
        return list(seen.values())


@dataclass(frozen=True)
class ExpiryRule:
    """A lifecycle rule: objects carrying the tag expire some days after they were last written.

    The days come from a setting: the app's variable `days_setting`, which a deployed stage
    sets from its field of the same name in lower case (infra/stages.py; the sync step writes
    it), so the app and the rule cannot disagree.
    """

    id: str
    tag_key: str
    tag_value: str
    days_setting: str  # e.g. SESSION_TTL_DAYS; the stage's field is session_ttl_days
    default_days: int  # the app's default of that setting
    extra_days: int = 0  # expiration = the setting's days + this

    def expiration_days(self, days: int) -> int:
        return days + self.extra_days

    @property
    def stage_field(self) -> str:
        return self.days_setting.lower()


DEFAULT_SESSION_TTL_DAYS = 30
DEFAULT_CONTEXT_FILE_TTL_DAYS = 90

# Offloaded messages and session-scoped context carry this tag (chalicelib/aws/objects.py
# SESSION_EXPIRY_TAG). Active sessions re-write their objects at most daily, so the rule only
# ever removes objects of sessions whose DynamoDB items have expired.
SESSION_EXPIRY_RULE = ExpiryRule(id="expire-idle-session-data", tag_key="llm-ide-expiry", tag_value="session",
                                 days_setting="SESSION_TTL_DAYS", default_days=DEFAULT_SESSION_TTL_DAYS,
                                 extra_days=2)
# A user's own context files carry this tag (CONTEXT_FILE_EXPIRY_TAG): each expires
# CONTEXT_FILE_TTL_DAYS after it was last written (a new put or upload restarts it).
CONTEXT_FILE_EXPIRY_RULE = ExpiryRule(id="expire-context-files", tag_key="llm-ide-expiry",
                                      tag_value="context-file", days_setting="CONTEXT_FILE_TTL_DAYS",
                                      default_days=DEFAULT_CONTEXT_FILE_TTL_DAYS)


@dataclass(frozen=True)
class Bucket:
    key: str
    env_var: str
    expiry_rules: tuple[ExpiryRule, ...] = ()  # lifecycle: tagged objects expire
    customer_key: bool = False  # SSE-KMS with the stage's customer managed key (else SSE-S3)
    cdn: bool = False  # served through CloudFront: built by the edge stack, in us-east-1
    abort_multipart_days: int = 1  # lifecycle: drop unfinished uploads
    expiration_days: int | None = None  # lifecycle: every object expires this many days after it was written

    def physical_name(self, stage: str, account: str = "000000000000") -> str:
        # Bucket names are global: the account id keeps them unique.
        return f"{PROJECT}-{stage}-{self.key}-{account}"


@dataclass(frozen=True)
class Secret:
    key: str
    env_var: str  # the app reads the secret's ARN from this variable

    def physical_name(self, stage: str) -> str:
        return f"{PROJECT}/{stage}/{self.key}"


TABLES: tuple[Table, ...] = (
    # One item per open WebSocket connection; the index lists a user's connections.
    Table(
        key="connections",
        env_var="CONNECTIONS_TABLE",
        partition_key=Attribute("connectionId"),
        indexes=(Index("byUser", Attribute("userSub"), Attribute("connectedAt")),),
    ),
    # One item per chat or GitHub request: owner, status, cancel flag.
    Table(
        key="requests",
        env_var="REQUESTS_TABLE",
        partition_key=Attribute("requestId"),
    ),
    # Rate-limit windows, token budgets and usage records, keyed by user (pk USER#<sub>):
    # hour records H#<hour> (minute windows + token budget), day records D#<day>, per-model
    # records D#<day>#M#<model>, settlement markers S#<request>; see chalicelib/limits/records.py.
    # The sparse index lists a day's heaviest users: only day records carry `day`.
    Table(
        key="usage",
        env_var="USAGE_TABLE",
        partition_key=Attribute("pk"),
        sort_key=Attribute("sk"),
        indexes=(Index("byDay", Attribute("day"), Attribute("totalTokens", "N")),),
    ),
    # Sessions and their messages in the user's partition (pk "USER#<sub>"): a session is
    # sk "SESSION#<id>", its messages "SESSION#<id>#MSG#<message id>". Only session items
    # carry updatedAt, so the sparse index lists a user's sessions, newest first.
    Table(
        key="sessions",
        env_var="SESSIONS_TABLE",
        partition_key=Attribute("pk"),
        sort_key=Attribute("sk"),
        indexes=(Index("byUpdated", Attribute("pk"), Attribute("updatedAt")),),
    ),
)

BUCKETS: tuple[Bucket, ...] = (
    # Users' context files and offloaded messages, every key under users/<sub>/.
    # users/<sub>/context/<path>, users/<sub>/sessions/<id>/{context/<path>,messages/<id>}
    Bucket(key="context", env_var="CONTEXT_BUCKET", customer_key=True,
           expiry_rules=(SESSION_EXPIRY_RULE, CONTEXT_FILE_EXPIRY_RULE)),
    # The static web client, read only by CloudFront.
    Bucket(key="ui", env_var="UI_BUCKET", cdn=True),
    # Chat request bodies larger than a frame (chat.upload), users/<sub>/<uploadId>: each serves one
    # chat.send and is deleted by the worker that read it; what is never used expires after a day
    # (chalicelib/chat/uploads.py UPLOAD_LIFETIME_SECONDS). Conversations are user data: the
    # context bucket's customer key encrypts them too.
    Bucket(key="uploads", env_var="CHAT_UPLOAD_BUCKET", customer_key=True, expiration_days=1),
)

# The CORS rule of the data buckets (S3's CORSRule shape): the web client PUTs large context
# files to presigned URLs and GETs large messages from them, from its own origin (CloudFront's
# or the local stack's); the signature, not the origin, guards them. infra/stacks/data.py and
# the local stack both apply it.
BROWSER_CORS: dict = {"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"],
                      "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3000}

SECRETS: tuple[Secret, ...] = (Secret(key="github-app", env_var="GITHUB_SECRET_ARN"),)


# The Lambda functions Chalice creates; Chalice names each `<app>-<stage>-<function>`.
FUNCTIONS: tuple[str, ...] = (
    "websocket_connect",
    "websocket_message",
    "websocket_disconnect",
    "api_handler",
    "ws_authorizer",  # the WebSocket $connect REQUEST authorizer (attached by infra/post_deploy.py)
    "rest_authorizer",  # Chalice's @app.authorizer of the REST routes
    "bedrock_worker",
    "github_worker",
)


def function_name(stage: str, function: str) -> str:
    return f"{PROJECT}-{stage}-{function}"


def table(key: str) -> Table:
    return next(t for t in TABLES if t.key == key)


def bucket(key: str) -> Bucket:
    return next(b for b in BUCKETS if b.key == key)


def secret(key: str) -> Secret:
    return next(s for s in SECRETS if s.key == key)
