"""The `deployai` logger: silent by default, useful when asked, and never shows the key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from pytest_httpx import HTTPXMock

from deployai._logging import RedactingFilter, redact
from tests.conftest import API_KEY, ClientFactory, completion_json, user


def test_debug_logs_each_request_with_status_and_request_id_but_not_the_key(
    make_client: ClientFactory, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    httpx_mock.add_response(json=completion_json(), headers={"x-request-id": "req_55"})
    with caplog.at_level(logging.DEBUG, logger="deployai"):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    messages = [r.getMessage() for r in caplog.records if r.name == "deployai"]
    assert len(messages) == 1
    assert "POST https://api.deployai.dev/v1/chat/completions -> 200" in messages[0]
    assert "req_55" in messages[0]
    assert "attempt 1" in messages[0]
    assert all(API_KEY not in m for m in messages)


def test_nothing_is_logged_by_default(
    make_client: ClientFactory, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    httpx_mock.add_response(json=completion_json())
    with caplog.at_level(logging.WARNING):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert [r for r in caplog.records if r.name == "deployai"] == []


def test_redaction_filter_removes_keys_and_bearer_tokens() -> None:
    record = logging.LogRecord(
        "deployai", logging.INFO, __file__, 1, "sent %s with %s", (API_KEY, "Bearer abc.def"), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "sent [redacted] with Bearer [redacted]"
    assert redact("nothing secret here") == "nothing secret here"


def test_deployai_log_env_turns_on_stderr_output() -> None:
    code = (
        "import logging, deployai; "
        "logging.getLogger('deployai').debug('probe %s', 'Authorization: Bearer sk-secret-value-123')"
    )
    env = {**os.environ, "DEPLOYAI_LOG": "debug"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert "probe Authorization: Bearer [redacted]" in result.stderr
    assert "sk-secret-value-123" not in result.stderr
    quiet = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DEPLOYAI_LOG"},
        timeout=60,
        check=True,
    )
    assert quiet.stderr == ""


def test_deployai_log_prints_each_line_once_beside_an_application_root_handler() -> None:
    code = (
        "import logging, sys; logging.basicConfig(stream=sys.stderr, level=logging.DEBUG, format='ROOT %(message)s'); "
        "import deployai; logging.getLogger('deployai').info('retrying soon')"
    )
    env = {**os.environ, "DEPLOYAI_LOG": "info"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert result.stderr.count("retrying soon") == 1
