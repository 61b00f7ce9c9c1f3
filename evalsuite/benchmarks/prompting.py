"""Benchmark prompts in lm-eval's layout, as plain text or through the model's chat template.

lm-eval (0.4.13, `ConfigurableTask.fewshot_context`) builds a prompt as messages: an optional system message
(the task description), then per few-shot example a user turn (question + target delimiter) and an
assistant turn (answer + few-shot delimiter), then the question. Plain text joins them. With a chat
template the few-shot examples stay separate user/assistant turns (`fewshot_as_multiturn`, which lm-eval's
CLI turns on with `--apply_chat_template`) or collapse into one user turn (`multiturn_to_singleturn`), and
the tokenizer's template renders the conversation with the generation prompt. Under a chat template a multiple-choice
continuation loses its leading target delimiter (" A" becomes "A"). The parity tests compare these
strings with lm-eval's own, item by item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

PromptFormat = Literal["plain", "chat_template"]


@dataclass(frozen=True)
class Shot:
    question: str
    answer: str


@dataclass
class Prompter:
    """How prompts are rendered for one model: `plain` (lm-eval's default) or `chat_template`."""

    format: PromptFormat = "plain"
    tokenizer: Any = None
    fewshot_as_multiturn: bool = True

    def __post_init__(self) -> None:
        if self.format == "chat_template" and getattr(self.tokenizer, "chat_template", None) is None:
            from evalsuite.errors import ConfigError

            raise ConfigError("prompt format chat_template needs a tokenizer with a chat template")

    def context(
        self,
        question: str,
        *,
        description: str = "",
        shots: Sequence[Shot] = (),
        target_delimiter: str = " ",
        fewshot_delimiter: str = "\n\n",
    ) -> str:
        """The prompt before the answer: description, few-shot examples, the question."""
        system = [{"role": "system", "content": description}] if description else []
        if self.format == "chat_template" and self.fewshot_as_multiturn:
            turns = [m for s in shots for m in ({"role": "user", "content": s.question},
                                                 {"role": "assistant", "content": s.answer})]
            return self.render_chat(system + turns + [{"role": "user", "content": question}])
        body = "".join(f"{s.question}{target_delimiter}{s.answer}{fewshot_delimiter}" for s in shots) + question
        if self.format == "plain":
            return description + body
        return self.render_chat(system + [{"role": "user", "content": body}])

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat template with the generation prompt; a template that rejects a system turn gets the
        messages without it (what lm-eval's HF model does)."""
        import jinja2

        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except jinja2.exceptions.TemplateError:
            kept = [m for m in messages if m["role"] != "system"]
            return self.tokenizer.apply_chat_template(kept, tokenize=False, add_generation_prompt=True)

    def continuation(self, answer: str, target_delimiter: str = " ") -> str:
        """A scored continuation: `" A"` in plain text, `"A"` right after a chat template's generation prompt."""
        return (target_delimiter if self.format == "plain" else "") + answer

    def conversation(self, turns: Sequence[tuple[str, str | None]]) -> str:
        """A multi-turn prompt: (user, assistant) pairs, the last assistant None. Chat: the template. Plain:
        each finished turn as "question answer" (the WIT plain format), turns separated by a blank line."""
        if self.format == "chat_template":
            messages = [m for user, answer in turns for m in (
                [{"role": "user", "content": user}] + ([{"role": "assistant", "content": answer}] if answer is not None else []))]
            return self.render_chat(messages)
        return "\n\n".join(user if answer is None else f"{user} {answer}" for user, answer in turns)
