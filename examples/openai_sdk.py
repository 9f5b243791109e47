"""The official `openai` SDK against the local DeployAI emulator: the same API, no account, no network.

For an app that uses `openai` (or any OpenAI-compatible client): point it at `EmulatorServer`'s
`base_url`, and script the emulator's answers and faults through its control API, as a test of
that app would. The server listens on 127.0.0.1 only and takes any `sk-` key.

    pip install openai "deployai[emulator]"
    python examples/openai_sdk.py
"""

from __future__ import annotations

import httpx
import openai

from deployai.testing import Emulator, EmulatorServer


def control(server: EmulatorServer, path: str, body: dict[str, object]) -> None:
    """Script the emulator over HTTP (`/_emulator/...`), as a test in any language would."""
    httpx.post(server.base_url.removesuffix("/v1") + "/_emulator/" + path, json=body).raise_for_status()


def main() -> None:
    """A list of models, a completion, a stream and a scripted failure, all through `openai.OpenAI`."""
    with EmulatorServer(Emulator()) as server:
        # max_retries=0: show the scripted failure at once instead of openai's own retries.
        with openai.OpenAI(base_url=server.base_url, api_key="sk-emulator-example", max_retries=0) as client:
            print(f"models: {', '.join(model.id for model in client.models.list().data[:3])}, ...")

            completion = client.chat.completions.create(
                model="anthropic/claude-3.5-sonnet", messages=[{"role": "user", "content": "Hello from openai!"}]
            )
            print(f"answer from {completion.model}: {completion.choices[0].message.content!r}")

            control(server, "replies", {"pieces": ["Stre", "amed ", "as scripted."]})
            stream = client.chat.completions.create(
                model="openai/gpt-4o", messages=[{"role": "user", "content": "Stream, please"}], stream=True
            )
            with stream:
                pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
            print(f"stream: {pieces}")

            control(server, "faults", {"fault": "fail", "status": 503})
            try:
                client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}])
            except openai.APIStatusError as error:  # openai's own error types, from the emulator's error body
                print(f"failure: openai.{type(error).__name__}, status {error.status_code}: {error.message}")

        print(f"the emulator answered: {server.emulator.statuses}")


if __name__ == "__main__":
    main()
