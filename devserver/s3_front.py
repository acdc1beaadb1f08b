"""S3 in front of moto: checks presigned URLs as S3 does, then passes every request on.

moto accepts any presigned URL whatever was signed, so a client could PUT a
different length or type than the app granted and nobody would notice before
production. This front verifies SigV4 query signatures (signed headers, expiry,
and every query parameter, the `response-content-type` and
`response-content-disposition` a presigned GET names included) with the local
credentials and answers 403 as S3 does; everything else (the app's own
header-signed calls) goes to moto untouched, which sets the response headers a
GET's `response-*` parameters ask for, as S3 does. S3 honours those only on a
signed request; an anonymous one is refused here with S3's 400. The app reaches
it through AWS_ENDPOINT_URL_S3, so presigned URLs point here.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web

log = logging.getLogger("devserver.s3")

MAX_BODY = 5 * 1024 ** 3
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
               "content-length", "proxy-authorization", "proxy-authenticate"}


class PresignRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def verify_presigned(method: str, raw_path: str, headers: Mapping[str, str], *,
                     secrets: Mapping[str, str], now: datetime) -> None:
    """Raise PresignRefused unless `raw_path` (path?query, as sent) carries a valid SigV4 query signature.

    `headers` must be case-insensitive (aiohttp's are) and include Host.
    """
    path, _, query = raw_path.partition("?")
    pairs = [pair.partition("=") for pair in query.split("&") if pair]
    params = {unquote(k): unquote(v) for k, _, v in pairs}
    try:
        algorithm, credential = params["X-Amz-Algorithm"], params["X-Amz-Credential"]
        stamp, expires = params["X-Amz-Date"], int(params["X-Amz-Expires"])
        signed_headers, signature = params["X-Amz-SignedHeaders"], params["X-Amz-Signature"]
        access_key, day, region, service, terminator = credential.split("/")
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except (KeyError, ValueError):
        raise PresignRefused("AuthorizationQueryParametersError", "malformed presigned query") from None
    if algorithm != "AWS4-HMAC-SHA256" or terminator != "aws4_request" or day != stamp[:8]:
        raise PresignRefused("AuthorizationQueryParametersError", "unsupported presigned query")
    if access_key not in secrets:
        raise PresignRefused("InvalidAccessKeyId", "unknown access key")
    if now > signed_at + timedelta(seconds=expires):
        raise PresignRefused("AccessDenied", "Request has expired")
    names = signed_headers.split(";")
    if "host" not in names or any(name not in headers for name in names):
        raise PresignRefused("SignatureDoesNotMatch", "a signed header is missing")
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items())
                               if k != "X-Amz-Signature")
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names)
    canonical_request = "\n".join([method, path, canonical_query, canonical_headers, signed_headers,
                                   "UNSIGNED-PAYLOAD"])
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([algorithm, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = f"AWS4{secrets[access_key]}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise PresignRefused("SignatureDoesNotMatch",
                             "The request signature we calculated does not match the signature you provided.")


class S3Front:
    def __init__(self, moto_url: str, *, secrets: Mapping[str, str]) -> None:
        self._moto_url = moto_url
        self._secrets = dict(secrets)
        self._session: aiohttp.ClientSession | None = None

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_cleanup.append(self._close)
        return app

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        signed = "X-Amz-Signature=" in request.query_string or "Authorization" in request.headers
        if not signed and any(name.startswith("response-") for name in request.query):
            return _s3_error(400, "InvalidRequest",
                             "Request specific response headers cannot be used for anonymous GET requests.")
        # A browser's CORS preflight (OPTIONS) of a presigned URL carries no signature of its own:
        # S3 answers it from the bucket's CORS rules, and so does moto.
        if "X-Amz-Signature=" in request.query_string and request.method != "OPTIONS":
            try:
                verify_presigned(request.method, request.raw_path, request.headers, secrets=self._secrets,
                                 now=datetime.now(UTC))
            except PresignRefused as refused:
                # The path only: the query string of a presigned URL is a credential.
                log.info("presigned %s %s refused: %s", request.method, request.path, refused.code)
                return _s3_error(403, refused.code, refused.message)
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        target = request.raw_path
        if "X-Amz-Signature=" in request.query_string:
            # Checked above. moto gets the request signed in a header instead, so its access
            # log never records the presigned query, which is a credential.
            path, _, query = target.partition("?")
            rest = "&".join(p for p in query.split("&") if not p.startswith("X-Amz-"))
            target = f"{path}?{rest}" if rest else path
            headers = self._signed_headers(request.method, self._moto_url + target, headers)
        async with self._session.request(request.method, self._moto_url + target, headers=headers,
                                         data=body if body else None, allow_redirects=False) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if request.method == "HEAD":
            # No body, but the object's length is the answer: pass it on as sent.
            response = web.StreamResponse(status=upstream.status, headers=out)
            if "Content-Length" in upstream.headers:
                response.headers["Content-Length"] = upstream.headers["Content-Length"]
            await response.prepare(request)
            await response.write_eof()
            return response
        return web.Response(status=upstream.status, headers=out, body=payload)

    def _signed_headers(self, method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        access_key, secret = next(iter(self._secrets.items()))
        signed = AWSRequest(method=method, url=url, headers={**headers, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(Credentials(access_key, secret), "s3", "us-east-1").add_auth(signed)
        return dict(signed.headers.items())

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>")
    return web.Response(status=status, body=body.encode(), content_type="application/xml")
