"""List the models you can use, with their provider and context window, then look one up by id.

With `DEPLOYAI_API_KEY` set, it asks the real DeployAI API; otherwise the local emulator on
127.0.0.1 (`pip install "deployai[emulator]"`).

    python examples/models.py
"""

from __future__ import annotations

from _connect import example_client

import deployai
from deployai import DeployAI


def print_models(client: DeployAI) -> None:
    """Print one line per model: id, provider and context window."""
    models = client.models.list()
    for model in models:
        context = f"{model.context_window:,} tokens" if model.context_window else "context unknown"
        print(f"{model.id:<32} {model.provider or model.owned_by or '?':<12} {context}")
    print(f"[{len(models)} models; request id {models.request_id}]")


def describe(client: DeployAI, model_id: str) -> None:
    """Print one model looked up by id, or say that the API does not know it."""
    try:
        model = client.models.retrieve(model_id)
    except deployai.NotFoundError as error:
        print(f"{model_id}: not found ({error.message})")
        return
    print(f"{model.id}: {model.context_window or '?'} tokens of context")


def main() -> None:
    """List the models of the real API when a key is set, else of the local emulator."""
    with example_client() as client:
        print_models(client)
        describe(client, "anthropic/claude-3.5-sonnet")
        describe(client, "openai/gpt-5-turbo-max")


if __name__ == "__main__":
    main()
