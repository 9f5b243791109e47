"""The API's resources, as reached from a client: `client.chat.completions`, `client.models`."""

from .chat import AsyncChat, AsyncCompletions, Chat, Completions
from .models import AsyncModels, Models

__all__ = ["AsyncChat", "AsyncCompletions", "AsyncModels", "Chat", "Completions", "Models"]
