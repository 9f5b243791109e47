"""The `deployai` logger: silent unless you configure logging or set `DEPLOYAI_LOG`.

`DEPLOYAI_LOG=info` logs each retry; `DEPLOYAI_LOG=debug` also logs every request and response
(method, URL, status, elapsed time, request id, attempt). API keys and `Authorization` values are
redacted from every record by `RedactingFilter`, which is attached to the logger whatever the
configuration.
"""

from __future__ import annotations

import logging
import os
import re

from ._constants import LOG_ENV

logger = logging.getLogger("deployai")

_SECRET = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=\-]+|\bsk-[A-Za-z0-9_\-]{4,}", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace API keys and bearer tokens in `text` with `[redacted]`."""
    return _SECRET.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


class RedactingFilter(logging.Filter):
    """Removes API keys and `Authorization` values from log records, whoever formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always keep it."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Attach the redaction filter and, when `DEPLOYAI_LOG` is set, a stderr handler at that level."""
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    level = environ.get(LOG_ENV, "").strip().upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        # Printed once, here: an application's own root handler would print every line a second time.
        # To route the SDK's records through your own logging set-up, configure `deployai` instead.
        logger.propagate = False
