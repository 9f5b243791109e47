"""The `deployai` logger: silent unless you configure logging or set `DEPLOYAI_LOG`.

`DEPLOYAI_LOG=info` logs each retry; `DEPLOYAI_LOG=debug` also logs every request and response
(method, URL, status, elapsed time, request id, attempt; each value of the URL's query as `***`,
as a gateway may take its key there). API keys and `Authorization` values are
redacted from every record by `RedactingFilter`, which is attached to the logger whatever the
configuration. The keys of the SDK's live clients are also redacted from the records of httpx's,
httpcore's and hpack's loggers, whose DEBUG lines show the headers a server sends (a server may echo
the key in one), by `_ClientKeysFilter`; hpack's whole header blocks, whose coding hides a key from a
search, are not shown while a client is alive.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
import warnings
import weakref
from typing import Final

from ._constants import LOG_ENV

logger = logging.getLogger("deployai")

_SECRET = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=\-]+|\bsk-[A-Za-z0-9._~+/=:\-]{4,}", re.IGNORECASE)


# The keys of this process's clients, by identity, each for as long as a client holds it: a key not
# shaped like `sk-...` can only be found by its value. Keys shorter than this are not looked for, as
# they would redact ordinary words.
# A reload of this module (a notebook's autoreload) keeps those of the clients made before it.
_keys: dict[int, weakref.ref[str]] = globals().get("_keys", {})
MIN_KEY_LENGTH = 8

# The loggers that can show what a server sent: httpcore's DEBUG lines show a response's headers.
_HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
# hpack, HTTP/2's header compression (httpx with `http2=True`), logs each header block whole as it
# encodes or decodes it: a key in one is Huffman-coded, and cannot be found by its text. Its other
# lines show headers as text.
_HPACK_LOGGERS = ("hpack.hpack", "hpack.table")
_HEADER_BLOCK_LINES = ("Encoded header block to %s", "Decoding %s")
# httpx's INFO line for each request: its method, URL, HTTP version, status and reason.
_REQUEST_LINE = 'HTTP Request: %s %s "%s %d %s"'
# The names of query parameters that may carry a secret.
SECRET_NAME: Final = re.compile(r"key|token|secret|sig|pass|auth|cred|session|code", re.IGNORECASE)


def remember_key(key: str) -> None:
    """Have `redact` find `key` (a client's `Secret`, which can be weakly referenced) while it is alive."""
    if len(key) < MIN_KEY_LENGTH:
        return
    ident = id(key)
    _keys[ident] = weakref.ref(key, lambda _: _keys.pop(ident, None))


def _forms(key: str) -> tuple[str, ...]:
    """`key` as text may show it: as it is, and as a repr or JSON escapes a backslash, a quote or a slash."""
    if not any(c in key for c in "\\'\"/"):
        return (key,)
    escaped = key.replace("\\", "\\\\")
    # The escaped forms first: the key itself may be a part of them.
    return (
        escaped.replace("'", "\\'"),
        escaped.replace('"', '\\"'),
        escaped.replace("/", "\\/"),
        escaped,
        key,
    )


def mentions(text: str, key: str) -> bool:
    """Whether `text` shows `key`, as it is or escaped (see `_forms`)."""
    return any(form in text for form in _forms(key))


def _without(text: str, key: str) -> str:
    for form in _forms(key):
        if form in text:
            text = text.replace(form, "[redacted]")
    return text


def known_keys_redacted(text: str, key: str | tuple[str, ...] | None = None) -> str:
    """`text` with `key` (or each of several) and the keys of live clients replaced by `[redacted]`."""
    keys = [key] if isinstance(key, str) else list(key or ())
    keys.extend(live for live in (ref() for ref in _live_refs()) if live is not None)
    # The longest first: a key that is a part of another would leave the rest of that one showing.
    for one in sorted(keys, key=len, reverse=True) if len(keys) > 1 else keys:
        if one:
            text = _without(text, one)
    return text


def _live_refs() -> tuple[weakref.ref[str], ...]:
    """The references to the keys of live clients, as they are now.

    A key collected while they are copied (the collector may run in the middle, and its callback
    drops the key) changes the dict under the copy: copied again, as it was then.
    """
    while True:
        try:
            return tuple(_keys.values())
        except RuntimeError:  # "dictionary changed size during iteration"
            continue


def longest_key() -> int:
    """The length of the longest key of a live client (0 if none)."""
    return max((len(live) for live in (ref() for ref in _live_refs()) if live is not None), default=0)


def shown_url(url: object) -> str:
    """`url` as the SDK writes it in logs, errors and reprs: each value of its query hidden (`?api-key=***`).

    A gateway may take its key in the query (`extra_query={"api-key": ...}`), and no key-shaped
    pattern finds one of another shape. The names stay, to tell the requests apart.
    """
    text = str(url)
    cut = text.find("?")
    if cut < 0:
        return text
    end = text.find("#", cut)
    query = text[cut + 1 :] if end < 0 else text[cut + 1 : end]
    if not query:
        return text[: cut + 1]
    parts = (part.partition("=") for part in query.split("&"))
    # A part without `=` is a value alone (`?KEY`): hidden whole.
    return text[: cut + 1] + "&".join(f"{name}=***" if sign else "***" for name, sign, _ in parts)


def redact(text: str, key: str | tuple[str, ...] | None = None) -> str:
    """Replace API keys and bearer tokens in `text` with `[redacted]`: `key`, the keys of live clients, any `sk-...`.

    The keys are looked for first, whole: the `sk-...` pattern may end inside a key of another shape.
    """
    return _SECRET.sub(lambda m: (m.group(1) or "") + "[redacted]", known_keys_redacted(text, key))


class RedactingFilter(logging.Filter):
    """Removes API keys and `Authorization` values from log records, whoever formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always keep it."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _ClientKeysFilter(logging.Filter):
    """Removes the keys of the SDK's live clients from the records of httpx's and httpcore's loggers.

    Other code in the process logs through those loggers too: its lines are left as they are
    (an `sk-SK` in a URL path is not a key), and are not even formatted while no client is alive.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always keep it."""
        if _keys:
            args = record.args
            if record.msg == _REQUEST_LINE and isinstance(args, tuple) and len(args) == 5:
                # httpx's own line, which the SDK's own client writes with `shown_url`, is written by
                # httpx's `send` where a library wraps it (Sentry's, Datadog's): a gateway's key in
                # the query, whose shape no search can know, would show.
                url = str(args[1])
                if _secret_in_query(url):
                    record.args = (args[0], shown_url(url), *args[2:])
            message = record.getMessage()
            cleaned = known_keys_redacted(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


def _secret_in_query(url: str) -> bool:
    """Whether `url`'s query may hold a secret: a value whose name speaks of one, or a long value alone."""
    query = url.partition("?")[2].partition("#")[0]
    for part in query.split("&"):
        name, sign, _ = part.partition("=")
        if SECRET_NAME.search(urllib.parse.unquote_plus(name)) if sign else len(name) >= MIN_KEY_LENGTH:
            return True
    return False


class _HeaderBlocksFilter(_ClientKeysFilter):
    """As `_ClientKeysFilter`, for hpack's loggers: also hides the header blocks while a client is alive."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always keep it."""
        if _keys and record.msg in _HEADER_BLOCK_LINES:
            record.msg, record.args = str(record.msg) % "[not shown: it may hold an API key]", None
            return True
        return super().filter(record)


_HANDLER_NAME = "deployai: DEPLOYAI_LOG"
# What a switch of other tools is set to: on is the retries, off nothing.
_LEVEL_WORDS = {"1": "INFO", "true": "INFO", "yes": "INFO", "on": "INFO", "0": "", "false": "", "no": "", "off": ""}


def _attach(target: logging.Logger, new: logging.Filter) -> None:
    """Give `target` the filter `new`, in place of one of its kind an earlier import of this module attached."""
    kind = type(new)
    for old in list(target.filters):
        if type(old).__qualname__ == kind.__qualname__ and type(old).__module__ == kind.__module__:
            if isinstance(old, kind):
                return
            target.removeFilter(old)
    target.addFilter(new)


def setup_logging(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Attach the redaction filters and, when `DEPLOYAI_LOG` is set, a stderr handler at that level.

    Run again (the module reloaded, as a notebook's autoreload does), it replaces what it attached
    rather than add another of each: every line would be printed twice.
    """
    _attach(logger, RedactingFilter())
    for names, kind in ((_HTTP_LOGGERS, _ClientKeysFilter), (_HPACK_LOGGERS, _HeaderBlocksFilter)):
        for each in map(logging.getLogger, names):
            _attach(each, kind())
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    value = environ.get(LOG_ENV, "").strip()
    level = _LEVEL_WORDS.get(value.lower(), value.upper())
    if value and level not in ("DEBUG", "INFO", "WARNING", "ERROR", ""):
        warnings.warn(
            f"{LOG_ENV}={value[:20]!r} is no log level: set it to debug or info (nothing is logged).", stacklevel=2
        )
    if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        handler = logging.StreamHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        # Printed once, here: an application's own root handler would print every line a second time.
        # To route the SDK's records through your own logging set-up, configure `deployai` instead.
        logger.propagate = False
