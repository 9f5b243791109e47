"""The emulator's core: one `handle()` that turns a request into a response, with no I/O and no sleeping.

Every adapter (the in-process httpx transports, the ASGI app behind the loopback server) calls
`Emulator.handle` and only does what the returned `EmulatorResponse` says. Keeping the waits in the
adapters lets the sync adapter use `time.sleep`, the async ones `anyio.sleep`, and a `VirtualClock`
replace both. The concerns live in their own modules: `_routing` (auth, endpoints), `_validation`,
`_limits` (rate limits), `_scripting` (replies, rules), `_faults`, `_aim` (the scripting methods),
`_completions` (replies as JSON or SSE), `_records` (exchanges and the reading methods), `_clock`,
`_adapters` (transports and clients), `_control` (the `/_emulator/` HTTP API), `_wire` (what is sent).
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from .._exceptions import InvalidParameterError
from ._adapters import DEFAULT_TEST_API_KEY, Adapters
from ._aim import Scripts
from ._completions import answer, default_reply
from ._faults import Cut, ErrorEvent, Fail, Malformed, apply_fault, check_count, fault_applies
from ._limits import RateWindows
from ._records import RecordedRequest, RequestLog, redact_headers
from ._routing import Route, RouteName, authenticate, find_route
from ._scripting import Reply, Rule, ScriptError, check_seconds, first_rule
from ._text import MODELS
from ._validation import check_chat_body
from ._wire import Draft, EmulatorResponse, error_draft, json_draft

__all__ = ["CONTROL_PREFIX", "MODEL_IDS", "Emulator"]

MODEL_IDS: Final[tuple[str, ...]] = tuple(model.id for model in MODELS)
"""The ids of the models the emulator serves, in the order `GET /v1/models` lists them."""

CONTROL_PREFIX: Final = "/_emulator/"

_MODELS_BY_ID: Final = {model.id: model for model in MODELS}

log = logging.getLogger("deployai.testing")


class Emulator(Scripts, RequestLog, Adapters):
    """A faithful local DeployAI API: models, chat completions (whole or streamed), auth, rate limits, faults.

    It answers like the real API: the seven documented models; chat completions that repeat the last
    user message (`"You said: ..."`) with honest token counts, or call a tool when given tools; the
    API's parameter rules (400 with `param`); 401, 404, 405 and 429 in the API's error form;
    `x-ratelimit-*` and `x-request-id` headers. Tests script replies and faults for the next
    requests (`reply`, `fail_next`, ...) or for the requests that match (`on(model=...)`), and read
    back every exchange (`requests`, `statuses`, `calls`).

    It is thread-safe. Reach it in-process with `client()`, `async_client()`, `transport()` or
    `async_transport()`, or over loopback HTTP with `deployai.testing.EmulatorServer`.

    Args:
        rate_limit: requests allowed per API key per window; None for no limit (and no
            `x-ratelimit-*` headers).
        window_seconds: the length of a rate-limit window; a key's window starts at the whole second of
            its first request (for a window of a second or more).
        token_latency: seconds between the token chunks of a stream.
        api_keys: the keys accepted (each starts with `sk-`; its clients send the first); by default
            any key that starts with `sk-`.
        max_recorded_requests: how many requests `requests` keeps (the most recent), so that a
            long-running server does not grow without bound.
        clock: the unix-time clock for rate-limit windows, `created` and `received_at` (None: real
            time, as by default). Given a `VirtualClock`, every wait (latency, stalls, the retries of
            the clients it makes) is taken on it, so no real time passes.
    """

    def __init__(
        self,
        *,
        rate_limit: int | None = 60,
        window_seconds: float = 60.0,
        token_latency: float = 0.0,
        api_keys: Iterable[str] | None = None,
        max_recorded_requests: int = 10_000,
        clock: Callable[[], float] | None = time.time,
    ) -> None:
        check_seconds("window_seconds", window_seconds, above_zero=True)
        limits = None if rate_limit is None else RateWindows(check_count("rate_limit", rate_limit, 1), window_seconds)
        self._limits = limits
        self._window_seconds = float(window_seconds)
        self._token_latency = check_seconds("token_latency", token_latency)
        keys = None if api_keys is None else [api_keys] if isinstance(api_keys, str) else list(api_keys)
        if keys is not None:
            # One it could never take would fail every call of its own clients with a 401.
            if not keys:
                raise InvalidParameterError("api_keys", api_keys, "at least one key (None takes any key)")
            for key in keys:
                # Its clients send a key as given, and the server reads it stripped: "sk-a " is never "sk-a ".
                if not isinstance(key, str) or not key.startswith("sk-") or len(key.split()) != 1 or key != key.strip():
                    shown = f"a {type(key).__name__} that is no such key"  # never the key itself
                    raise InvalidParameterError(
                        "api_keys", shown, "keys that start with 'sk-', with no spaces, as the API's do"
                    )
        if clock is None:
            clock = time.time
        elif not callable(clock):
            raise InvalidParameterError("clock", clock, "a function that gives the unix time (None: real time)")
        self._api_keys = None if keys is None else frozenset(keys)
        self._client_key = keys[0] if keys else DEFAULT_TEST_API_KEY  # what its clients send: a key it takes
        self._clock = clock
        super().__init__()
        self._requests: deque[RecordedRequest] = deque(
            maxlen=check_count("max_recorded_requests", max_recorded_requests, 0)
        )
        self._request_count = 0

    @property
    def rate_limit(self) -> int | None:
        """Requests allowed per API key per window (None: no limit)."""
        return None if self._limits is None else self._limits.rate_limit

    @property
    def window_seconds(self) -> float:
        """The length of a rate-limit window, in seconds."""
        return self._window_seconds

    @property
    def token_latency(self) -> float:
        """Seconds between the token chunks of a stream."""
        return self._token_latency

    @property
    def clock(self) -> Callable[[], float]:
        """The emulator's clock (a `VirtualClock` in the pytest fixtures)."""
        return self._clock

    def __repr__(self) -> str:
        return (
            f"Emulator(rate_limit={self.rate_limit}, window_seconds={self._window_seconds:g}, "
            f"token_latency={self._token_latency:g})"
        )

    def reset(self) -> None:
        """Forget recorded requests, scripted rules, rate-limit windows and the request counter."""
        with self._lock:
            if self._limits is not None:
                self._limits.clear()
            self._rules.clear()
            self._rule_ids = itertools.count(1)
            self._requests.clear()
            self._request_count = 0

    # The core

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> EmulatorResponse:
        """Answer one request. Pure apart from the emulator's state: it never sleeps and does no I/O.

        Args:
            method: the HTTP method.
            path: the request path, optionally with `?query`, for example `/v1/chat/completions`.
            headers: the request headers (any case).
            body: the raw request body.

        Returns:
            What to send, and when (see `EmulatorResponse`).
        """
        method = method.upper()
        path, _, query = path.partition("?")
        if path.startswith(CONTROL_PREFIX):
            from ._control import control

            return control(self, method, path[len(CONTROL_PREFIX) :], body).finish()
        lowered = {name.lower(): value for name, value in headers.items()}
        parsed: Any = None
        parse_error: str | None = None
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            parse_error = str(exc) or type(exc).__name__
        kept, fingerprint = redact_headers(lowered)
        with self._lock:
            self._request_count += 1
            number = self._request_count
            now = self._clock()
            record = RecordedRequest(
                method, path, query, kept, body, parsed, f"req_{number}", received_at=now, _key_sha256=fingerprint
            )
            route, draft = self._respond(record, lowered.get("authorization"), parse_error, number, now)
            # A new record rather than `dataclasses.replace`, which costs several times more.
            self._requests.append(
                RecordedRequest(
                    method,
                    path,
                    query,
                    kept,
                    body,
                    parsed,
                    record.request_id,
                    route,
                    draft.status,
                    dict(draft.headers),
                    draft.events is not None,
                    now,
                    draft.duration,
                    fingerprint,
                )
            )
            return draft.finish()

    def _respond(
        self, record: RecordedRequest, authorization: str | None, parse_error: str | None, number: int, now: float
    ) -> tuple[RouteName | None, Draft]:
        # `date` on the emulator's clock, as its rate-limit resets are: a client reads those against it.
        base = [("date", email.utils.formatdate(now, usegmt=True)), ("x-request-id", record.request_id)]
        key, problem = authenticate(authorization, self._api_keys)
        if key is None:
            draft = error_draft(401, problem, base)
            draft.headers.append(("www-authenticate", "Bearer"))
            return None, draft
        found = find_route(record.method, record.path, base)
        route = found.name if isinstance(found, Route) else None
        if self._limits is not None:
            limited = self._limits.spend(key, now, base)
            if limited is not None:
                return route, limited
        if not isinstance(found, Route):
            again = find_route(record.method, record.path, base)  # again: `base` has the rate-limit headers now
            assert not isinstance(again, Route)
            return None, again
        try:
            return found.name, self._answer(found, record, parse_error, number, now, base)
        except ScriptError as exc:  # a test's own predicate failed: say so in the answer, record it
            return found.name, error_draft(500, str(exc), base, code="script_error")
        except Exception as exc:
            # A request it has no answer for (a bug of its own): in the API's form and recorded, as
            # any other, rather than a bare 500 from the server and a test left to guess.
            log.exception("The emulator failed to answer %s %s", record.method, record.path)
            message = f"The emulator failed to answer this request ({type(exc).__name__}: {exc})."
            return found.name, error_draft(500, message, base, code="emulator_error")

    def _answer(
        self,
        found: Route,
        record: RecordedRequest,
        parse_error: str | None,
        number: int,
        now: float,
        base: list[tuple[str, str]],
    ) -> Draft:
        reply_rule = None
        if found.name == "model":
            model = _MODELS_BY_ID.get(found.model_id or "")
            if model is None:
                message = f"The model '{found.model_id}' does not exist or you do not have access to it."
                draft = error_draft(404, message, base, code="model_not_found", param="model")
            else:
                draft = json_draft(200, model.to_json(), base)
        elif found.name == "models":
            draft = json_draft(200, {"object": "list", "data": [m.to_json() for m in MODELS]}, base)
        else:
            invalid = check_chat_body(record.json, parse_error, base)
            if invalid is not None:
                draft = invalid
            else:
                reply_rule = first_rule(
                    self._rules, lambda r: isinstance(r.action, Reply) and r.match.matches("chat", record)
                )
                reply = reply_rule.action if reply_rule is not None else default_reply(record.json, f"call_{number}")
                assert isinstance(reply, Reply)
                draft = answer(
                    record.json,
                    reply,
                    request_number=number,
                    created=int(now),
                    token_latency=self._token_latency,
                    headers=base,
                )
        ok, stream = draft.status == 200, draft.events is not None
        fault_rule = first_rule(
            self._rules,
            lambda r: (
                not isinstance(r.action, Reply)
                and fault_applies(r.action, found.name, ok=ok, stream=stream)
                and r.match.matches(found.name, record)
            ),
        )
        if fault_rule is not None:
            assert not isinstance(fault_rule.action, Reply)
            draft = apply_fault(fault_rule.action, draft, base)
            self._use(fault_rule)
        # A reply is used by the answer built with it; one a fault replaced or broke waits for the retry.
        # (Whether a stalled or slowed answer reaches its client is not known here.)
        broken = fault_rule is not None and isinstance(fault_rule.action, (Fail, Cut, ErrorEvent, Malformed))
        if reply_rule is not None and draft.status == 200 and not broken:
            self._use(reply_rule)
        return draft

    def _use(self, rule: Rule) -> None:
        rule.hits += 1
        if rule.used_up:
            self._rules.remove(rule)
