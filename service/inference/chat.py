"""Chat prompts rendered exactly as transformers renders them: the tokenizer's ``apply_chat_template``.

So a conversation is served, and evaluated, in the format the model was fine-tuned on. The template is
HELDOUT_CHAT_TEMPLATE's file if set, else the tokenizer's own (``chat_template.jinja`` or
``tokenizer_config.json``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from transformers import AutoTokenizer

from service.inference.engine_errors import ChatTemplateFailed, NoChatTemplate
from service.inference.model_dir import ModelLoadError


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Chat:
    messages: tuple[ChatMessage, ...]


class ChatTemplate:
    def __init__(self, tokenizer: Any, template: str | None) -> None:
        self._tokenizer = tokenizer
        self._template = template

    def render(self, chat: Chat) -> str:
        """The prompt text, ending with the assistant's turn opened (``add_generation_prompt``)."""
        messages = [{"role": m.role, "content": m.content} for m in chat.messages]
        try:
            text = self._tokenizer.apply_chat_template(
                messages, chat_template=self._template, tokenize=False, add_generation_prompt=True
            )
        except TemplateError as exc:
            # Templates refuse conversations they cannot format (roles out of turn) with raise_exception.
            raise ChatTemplateFailed(str(exc)) from None
        return str(text)


class NoTemplate:
    """What a model without a chat template answers: the 422 naming how to give it one."""

    def __init__(self, model: str) -> None:
        self._model = model

    def render(self, chat: Chat) -> str:
        raise NoChatTemplate(self._model)


def load_chat_template(model: str, override: Path | None, tokenizer_dirs: Sequence[Path]) -> ChatTemplate | NoTemplate:
    """The template of the first directory whose tokenizer loads, or ``override``'s text instead."""
    try:
        template = override.read_text() if override is not None else None
    except OSError as exc:
        raise ModelLoadError(f"HELDOUT_CHAT_TEMPLATE: {exc}") from exc
    for directory in tokenizer_dirs:
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError):
            continue
        if template is not None or tokenizer.chat_template is not None:
            return ChatTemplate(tokenizer, template)
    return NoTemplate(model)
