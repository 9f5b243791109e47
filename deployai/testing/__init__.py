"""A faithful local DeployAI emulator and test kit, in the spirit of stripe-mock.

One pure core, `Emulator`, answers requests like the DeployAI API does (models, chat completions
whole or streamed, auth, rate limits, errors) and can be scripted to fail. Reach it:

- in-process, without sockets: `emulator.client()`, `emulator.async_client()`, or
  `httpx.Client(transport=emulator.transport())`;
- over loopback HTTP (any client, including the `openai` package): `EmulatorServer`, or
  `python -m deployai.testing serve --port 8787` (needs `pip install "deployai[emulator]"`);
- from pytest: the fixtures `deployai_emulator`, `deployai_client`, `deployai_async_client` and
  `deployai_emulator_server` (see `deployai.testing.pytest_plugin`).

```python
from deployai.testing import Emulator

emulator = Emulator()
emulator.fail_next(503, headers={"retry-after": "0"})
with emulator.client() as client:
    completion = client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "Hello!"}]
    )
assert completion.choices[0].message.content == "You said: Hello!"
assert len(emulator.requests) == 2  # the 503, then the retry
```
"""

from ._aim import Aim
from ._asgi import EmulatorASGIApp, StreamCutError
from ._clock import VirtualClock
from ._emulator import MODEL_IDS, Emulator
from ._records import RecordedRequest
from ._scripting import Match, Reply, Rule, ToolCall
from ._server import EmulatorServer
from ._text import count_tokens
from ._transport import AsyncEmulatorTransport, EmulatorTransport
from ._wire import EmulatorResponse, Piece

__all__ = [
    "MODEL_IDS",
    "Aim",
    "AsyncEmulatorTransport",
    "Emulator",
    "EmulatorASGIApp",
    "EmulatorResponse",
    "EmulatorServer",
    "EmulatorTransport",
    "Match",
    "Piece",
    "RecordedRequest",
    "Reply",
    "Rule",
    "StreamCutError",
    "ToolCall",
    "VirtualClock",
    "count_tokens",
]
