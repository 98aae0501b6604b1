"""What the HTTP adapters share: one pooled client per backend, the secret resolved at call
time, and the mapping of every failure to exactly one error class with a short, scrubbed detail.

A protocol subclass says where a call goes, what it sends, and how to read the answer, the
stream and the provider's own ways of saying "too long" or "refused". Everything else (status
codes, transport errors, Retry-After, scrubbing) is decided here once, so the three protocols
classify the same failure the same way.
"""

from __future__ import annotations

import functools
import json
import math
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from registry.contracts import validate_secret_ref
from registry.secret_refs import UnresolvedSecret, resolve
from routing.adapters.base import Adapter, AdapterError, BackendSpec, Completion

DETAIL_CHARS = 300
SCRUBBED = "[secret]"
USER_AGENT = "fos-console"
# Enough connections for the executor's thread pool to call one backend concurrently, few
# enough that a stuck backend cannot hold hundreds of sockets.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=15.0)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every adapter: building one loads the CA bundle, which
    costs tens of milliseconds, and a context is safe to share between connections."""
    return httpx.create_ssl_context()


def scrub(text: str, secret: str) -> str:
    """Replace a secret's value, in the forms an upstream may echo it, with a marker."""
    if not secret:
        return text
    for form in {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}:
        text = text.replace(form, SCRUBBED)
    return text


def clean_detail(text: str, secret: str) -> str:
    # Scrub before cutting: a cut through the secret would leave a prefix that no longer matches.
    text = " ".join(scrub(text, secret).split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from Retry-After (seconds or an HTTP-date) or OpenAI's retry-after-ms."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            ms = float(raw_ms)
        except ValueError:
            pass
        else:
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000
    raw = (headers.get("retry-after") or "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def error_payload(response: httpx.Response) -> tuple[Any, str]:
    """The parsed error body (or None) and the provider's message in it, for any of the shapes
    OpenAI-compatible servers, Anthropic and Ollama use."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        return None, " ".join(text.split())[:DETAIL_CHARS] or "(empty body)"
    message = ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, str):
            message = error
        elif isinstance(error, dict):
            message = str(error.get("message") or "")
            code = error.get("code") or error.get("type")
            if isinstance(code, str) and code:
                message = f"{message} ({code})" if message else code
        if not message:
            for key in ("message", "detail"):
                if isinstance(data.get(key), str):
                    message = data[key]
                    break
    return data, message or " ".join(text.split())[:DETAIL_CHARS]


def error_fields(data: Any) -> tuple[str, str]:
    """(code, type) of an {"error": {...}} body, empty strings when absent."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, kind = error.get("code"), error.get("type")
    return (code if isinstance(code, str) else ""), (kind if isinstance(kind, str) else "")


def bad(detail: str) -> AdapterError:
    return AdapterError("bad_response", detail)


def token_count(value: Any, where: str) -> int:
    """A usage count: absent is 0 (some compatible servers send no usage), anything but a
    non-negative integer is a malformed answer."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad(f"{where} is not a token count")
    return value


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) pairs of a server-sent event stream."""
    event, data = "", []
    for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


def with_instructions(messages: list[dict[str, str]], instructions: str) -> list[dict[str, str]]:
    """The conversation with the capability's instructions as a leading system message."""
    return ([{"role": "system", "content": instructions}] if instructions else []) + list(messages)


def parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise bad(f"{where} is not JSON: {text[:80]!r}") from None


class HTTPAdapter(Adapter):
    """One wire protocol over one pooled httpx client. Subclasses fill in the hooks below."""

    # Appended to the backend's base_url (DESIGN.md, "Where each adapter sends a call").
    path = ""

    def __init__(self, spec: BackendSpec) -> None:
        super().__init__(spec)
        self.url = spec.base_url.rstrip("/") + self.path
        self._lock = threading.Lock()
        self._in_flight = 0
        self._retired = False
        self._client = self._new_client()

    # --- hooks ---

    def headers(self, secret: str) -> dict[str, str]:
        """Bearer authentication when a secret is set (OpenAI-compatible servers; a proxy in
        front of Ollama). Protocols that authenticate otherwise override this."""
        headers = {"Accept": "application/json"}
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        return headers

    def payload(self, messages: list[dict[str, str]], instructions: str, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def read_completion(self, data: Any) -> Completion:
        """The answer of a 2xx JSON body; raises bad_response or content_refused."""
        raise NotImplementedError

    def read_stream(self, response: httpx.Response) -> Iterator[str | Completion]:
        raise NotImplementedError

    def is_context_error(self, status: int, data: Any, message: str) -> bool:
        return False

    def is_refusal_error(self, status: int, data: Any, message: str) -> bool:
        return False

    # --- the Adapter interface ---

    def complete(self, *, messages: list[dict[str, str]], instructions: str, timeout: float) -> Completion:
        secret = self._secret()
        with self._call(secret, timeout) as client:
            response = client.post(
                self.url,
                json=self.payload(messages, instructions, stream=False),
                headers=self.headers(secret),
                timeout=httpx.Timeout(timeout),
            )
            self._check_status(response)
            try:
                data = response.json()
            except ValueError:
                content_type = response.headers.get("content-type", "no content type")
                raise bad(f"HTTP {response.status_code} with a body that is not JSON ({content_type})") from None
            return self.read_completion(data)

    def stream(
        self, *, messages: list[dict[str, str]], instructions: str, timeout: float
    ) -> Iterator[str | Completion]:
        # The per-read timeout bounds the wait for each chunk, not the whole stream.
        secret = self._secret()
        with self._call(secret, timeout) as client:
            with client.stream(
                "POST",
                self.url,
                json=self.payload(messages, instructions, stream=True),
                headers=self.headers(secret),
                timeout=httpx.Timeout(timeout),
            ) as response:
                if not 200 <= response.status_code < 300:
                    response.read()
                    self._check_status(response)
                yield from self.read_stream(response)

    def close(self) -> None:
        with self._lock:
            client = self._client
        client.close()

    def retire(self) -> None:
        """Close once the calls already running on this instance have finished (the registry
        replaced it after a policy edit; a call in flight must not lose its connection)."""
        with self._lock:
            self._retired = True
            idle = self._in_flight == 0
        if idle:
            self.close()

    # --- shared machinery ---

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.spec.timeout_s),
            # The executor is the only retry loop (base.py), so the transport never retries.
            transport=httpx.HTTPTransport(verify=tls_context(), retries=0, limits=LIMITS),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def _secret(self) -> str:
        if not self.spec.secret:
            return ""
        try:
            return resolve(self.spec.secret)
        except UnresolvedSecret as exc:
            if validate_secret_ref(self.spec.secret):
                # Not a reference at all: most likely a key pasted where a reference belongs,
                # so the exception (which quotes it) must not be repeated.
                raise AdapterError("auth", "the backend's secret is not a reference (env:NAME or file:/path)") from None
            raise AdapterError("auth", f"secret reference does not resolve: {exc}") from None

    @contextmanager
    def _call(self, secret: str, timeout: float) -> Iterator[httpx.Client]:
        """One call on the pooled client: counts it in flight and turns every failure into one
        AdapterError whose detail is scrubbed of the secret and cut short. Exceptions are not
        chained, so no httpx exception (which may carry the URL) travels with the error."""
        with self._lock:
            if self._client.is_closed:
                # Closed by close() or a retirement while this caller held the instance.
                self._client = self._new_client()
            client = self._client
            self._in_flight += 1
        try:
            yield client
        except AdapterError as exc:
            raise AdapterError(
                exc.error_class, clean_detail(exc.detail, secret), status=exc.status, retry_after=exc.retry_after
            ) from None
        except httpx.TimeoutException as exc:
            raise AdapterError("timeout", f"no answer within {timeout:g} s ({type(exc).__name__})") from None
        except httpx.DecodingError as exc:
            raise AdapterError("bad_response", clean_detail(f"undecodable body: {exc}", secret)) from None
        except httpx.TransportError as exc:
            # Refused, reset, dropped mid-body, DNS, TLS, proxy: the backend could not be reached.
            text = clean_detail(f"{type(exc).__name__}: {exc}", secret)
            raise AdapterError("connection", text) from None
        except httpx.InvalidURL:
            raise AdapterError("connection", "the backend's base_url is not a usable URL") from None
        finally:
            with self._lock:
                self._in_flight -= 1
                close = self._retired and self._in_flight == 0
            if close:
                client.close()

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        data, message = error_payload(response)
        said = f"HTTP {status}: {message}"
        if status == 429:
            raise AdapterError("rate_limited", said, status=status, retry_after=parse_retry_after(response.headers))
        if status in (401, 403):
            raise AdapterError("auth", said, status=status)
        # 413 is the input being too large for this backend, whatever the provider calls it.
        if status == 413 or (status >= 400 and self.is_context_error(status, data, message)):
            raise AdapterError("context_length", said, status=status)
        if status >= 400 and self.is_refusal_error(status, data, message):
            raise AdapterError("content_refused", said, status=status)
        if status >= 500:
            raise AdapterError("server_error", said, status=status)
        if status >= 400:
            raise AdapterError("bad_response", f"upstream rejected the request: {said}", status=status)
        raise AdapterError("bad_response", f"unexpected HTTP {status} (redirects are not followed)", status=status)
