"""The package as users install it: public names, version, and the wheel's contents."""

from __future__ import annotations

import datetime
import inspect
import os
import subprocess
import sys
import typing
import zipfile
from pathlib import Path

import pydantic
import pytest

import deployai

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_are_exactly_these() -> None:
    assert len(set(deployai.__all__)) == len(deployai.__all__)
    expected = {
        "NOT_GIVEN", "APIConnectionError", "APIError", "APIResponseValidationError", "APIStatusError",
        "APITimeoutError", "AsyncDeployAI", "AsyncStream", "AuthenticationError", "BadRequestError",
        "ConflictError", "DeployAI", "DeployAIError", "InternalServerError", "InvalidParameterError",
        "ModelAlias", "NotFoundError", "NotGiven", "PermissionDeniedError", "RateLimit", "RateLimitError",
        "RateLimiter", "RawResponse", "RedisRateLimiter", "ServiceUnavailableError", "Stream",
        "UnprocessableEntityError", "__version__", "is_retryable", "retry_after", "types",
    }  # fmt: skip
    assert set(deployai.__all__) == expected


@pytest.mark.parametrize("name", [n for n in deployai.__all__ if isinstance(getattr(deployai, n), type)])
def test_public_classes_show_the_public_module_and_have_docstrings(name: str) -> None:
    cls = getattr(deployai, name)
    assert cls.__module__ == "deployai"
    assert (cls.__doc__ or "").strip()


@pytest.mark.parametrize("name", [n for n in deployai.__all__ if isinstance(getattr(deployai, n), type)])
def test_public_classes_annotations_resolve_though_they_show_the_public_module(name: str) -> None:
    with deployai.DeployAI(api_key="sk-types") as client:
        assert client.chat.completions  # the models, which some methods return, load as at a first call

    cls = getattr(deployai, name)
    typing.get_type_hints(cls)  # raises NameError on a name it cannot find
    for member, value in vars(cls).items():
        function = getattr(value, "fget", value)  # a property's getter
        if inspect.isfunction(function) and (member == "__init__" or not member.startswith("_")):
            typing.get_type_hints(function)


def test_a_rate_limit_can_be_a_field_of_your_own_pydantic_model() -> None:
    class Report(pydantic.BaseModel):  # a FastAPI response, say
        rate_limit: deployai.RateLimit

    reset_at = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.timezone.utc)
    report = Report(rate_limit=deployai.RateLimit(limit=60, remaining=59, reset_at=reset_at))
    assert Report.model_validate_json(report.model_dump_json()) == report


def test_version_is_a_string() -> None:
    assert deployai.__version__.count(".") == 2


def test_not_given_is_falsy_and_a_singleton() -> None:
    assert not deployai.NOT_GIVEN
    assert deployai.NotGiven() is deployai.NOT_GIVEN
    assert repr(deployai.NOT_GIVEN) == "NOT_GIVEN"


def test_import_does_not_configure_logging_output() -> None:
    code = "import logging, deployai; print(len(logging.getLogger('deployai').handlers))"
    env = {k: v for k, v in os.environ.items() if k != "DEPLOYAI_LOG"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert result.stdout.strip() == "0"


def test_making_a_client_builds_no_model_until_the_first_call_or_deployai_types() -> None:
    # Building pydantic models is most of the package's import time: a program that only makes a
    # client (a CLI's --help, a worker before its first job) does not pay for it.
    code = (
        "import sys, deployai\n"
        "deployai.DeployAI(api_key='sk-x'); deployai.AsyncDeployAI(api_key='sk-x')\n"
        "assert not [m for m in sys.modules if m.startswith(('deployai.types', 'pydantic.main'))]\n"
        "assert 'types' in dir(deployai)\n"
        "assert deployai.types.ChatCompletion.__name__ == 'ChatCompletion'\n"
        "from deployai import types\n"
        "assert types is sys.modules['deployai.types']\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=60, check=True)


def test_wheel_holds_py_typed_and_the_license_and_no_tests(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("deployai-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "deployai/py.typed" in names
    assert "deployai/__init__.py" in names
    assert "_deployai_pytest_plugin.py" in names  # the pytest11 entry point's module
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    # MIT asks for its notice to travel with the code: the wheel had none.
    assert "License-Expression: MIT" in text
    assert "License-File: LICENSE" in text
    (notice,) = [n for n in names if n.endswith("/LICENSE")]
    assert "Permission is hereby granted" in zipfile.ZipFile(wheel).read(notice).decode()
    for requirement in ("httpx", "httpx-sse", "pydantic", "typing-extensions"):
        assert f"Requires-Dist: {requirement}" in text
