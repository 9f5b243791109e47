"""`examples/notebook.ipynb`, executed headless in a real Jupyter kernel against the local emulator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"


def cell_text(cell: Any) -> str:
    """What a code cell printed (the kernel's own log lines left out)."""
    text = "".join(output.get("text", "") for output in cell.outputs if output["output_type"] == "stream")
    return "\n".join(line for line in text.splitlines() if not line.startswith("[IPKernelApp]"))


@pytest.fixture
def executed(tmp_path: Path) -> list[Any]:
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    # No key: the notebook starts its own emulator. JUPYTER_PLATFORM_DIRS quiets jupyter_core's notice.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYAI_")} | {"JUPYTER_PLATFORM_DIRS": "1"}
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute(env=env)
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_notebook_runs_top_level_await_streams_gather_a_paced_batch_and_a_typed_error(executed: list[Any]) -> None:
    errors = [output for cell in executed for output in cell.outputs if output["output_type"] == "error"]
    assert errors == []
    setup, call, stream, gathered, paced, error, _ = (cell_text(cell) for cell in executed)
    assert "using the local emulator at http://127.0.0.1:" in setup
    assert call.splitlines() == [
        "You said: Hello from a notebook!",
        "prompt_tokens=5 completion_tokens=8 total_tokens=13",
    ]
    assert stream.strip() == "You said: Stream this, please."
    assert gathered.splitlines() == [
        "You said: What is SSE?",
        "You said: What is a token?",
        "You said: What is a rate limit?",
    ]
    assert "20/20" in paced  # the progress bar, drawn as text without ipywidgets, and no warning about it
    assert "IProgress" not in paced
    assert paced.rstrip().endswith("20 of 20 answered")
    assert error.startswith("NotFoundError: status 404, request id req_")
