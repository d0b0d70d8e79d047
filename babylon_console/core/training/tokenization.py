"""Recorded LLM calls as the token ids the base model saw and produced (DESIGN "Trainable turns").

ART (0.5.x) trains only assistant turns given as openai `Choice` objects that carry
`prompt_token_ids` and `token_ids` in their extra fields; a plain-dict assistant message trains
nothing. Recorded game data has no token ids, so they are rebuilt here, the way the serving vLLM
would have produced them for the request the agent actually made:

- prompt: the call's system + user prompt rendered with the base model's chat template with the
  generation prompt on, encoded without extra special tokens (the template writes its own);
- completion: the recorded response encoded on its own, plus the tokenizer's end-of-sequence
  token, as vLLM returns a completion that stopped normally.

Length rule: a call whose prompt + completion is longer than `max_seq_length` is dropped and
counted (`CallEncoding.dropped_too_long`); a response is never truncated.

The tokenizer is ART's `art.tokenizer.get_tokenizer` for a Hugging Face id or a local directory,
loaded once per source and cached; loading is blocking, so callers on an event loop run it in a
worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..game.rows import RecordedCall

DEFAULT_MAX_SEQ_LENGTH = 32_768


class TokenizerUnavailable(InvalidInput, RuntimeError):
    """The configured tokenizer cannot be loaded; the message says which and why."""

    title = "Tokenizer unavailable"


@dataclass(slots=True)
class CallTokens:
    prompt_token_ids: list[int]
    token_ids: list[int]


@dataclass(slots=True)
class CallEncoding:
    """Per input call, its tokens or None when dropped; and the counts of what was dropped."""

    tokens: list[CallTokens | None] = field(default_factory=list)
    dropped_too_long: int = 0
    dropped_empty: int = 0


_lock = threading.Lock()
_cache: dict[str, Any] = {}


def tokenizer_source(tokenizer_setting: str | None, base_model: str) -> str:
    """`BABYLON_TOKENIZER` when set (a Hugging Face id or a directory), else the base model's id."""
    return (tokenizer_setting or "").strip() or base_model


def load_tokenizer(source: str) -> Any:
    """ART's tokenizer for `source`, loaded once per process (thread-safe). Blocking."""
    with _lock:
        cached = _cache.get(source)
        if cached is not None:
            return cached
        try:
            from art.tokenizer import get_tokenizer

            tokenizer = get_tokenizer(source)
        except Exception as exc:  # OSError (not found / no hub), ValueError, ImportError ...
            where = "directory" if os.path.isdir(source) else "Hugging Face id"
            raise TokenizerUnavailable(
                f"cannot load the tokenizer {source!r} ({where}): {str(exc).splitlines()[0] if str(exc) else exc!r}. "
                "Set BABYLON_TOKENIZER to a local tokenizer directory on hosts without Hugging Face access"
            ) from exc
        check_tokenizer(tokenizer, source)
        _cache[source] = tokenizer
        return tokenizer


def check_tokenizer(tokenizer: Any, source: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizerUnavailable(f"the tokenizer {source!r} has no chat template: prompts cannot be rendered")
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise TokenizerUnavailable(f"the tokenizer {source!r} has no end-of-sequence token")


def render_prompt(tokenizer: Any, system_prompt: str, user_prompt: str) -> str:
    messages = [{"role": "user", "content": user_prompt}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


_SENTINEL = "\x00babylon-user-content\x00"
_split_exact: dict[int, bool] = {}  # id(tokenizer) -> splitting prompts at the system turn is exact


_specials: dict[int, list[str]] = {}


def _special_strings(tokenizer: Any) -> list[str]:
    cached = _specials.get(id(tokenizer))
    if cached is None:
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        specials = {t.content for t in decoder.values() if getattr(t, "special", False)}
        cached = _specials[id(tokenizer)] = sorted(
            specials | set(getattr(tokenizer, "all_special_tokens", ()) or ()), key=len, reverse=True)
    return cached


def system_cut(tokenizer: Any, system_prompt: str, rendered: str) -> int | None:
    """Where `rendered` (a prompt with this system prompt) can be cut so that the part before is
    the same for every call of the agent: the first special token after the system content. The
    tokenizer splits text at special tokens before encoding, so the halves encode independently."""
    if not system_prompt:
        return None
    end = rendered.find(system_prompt)
    if end < 0:
        return None
    end += len(system_prompt)
    cuts = [i for i in (rendered.find(tok, end) for tok in _special_strings(tokenizer)) if i >= 0]
    return min(cuts) if cuts else None


def encode_calls(tokenizer: Any, calls: Sequence[RecordedCall], max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
                 ) -> CallEncoding:
    """Token ids for each call (None where dropped). Every prompt is rendered with the chat
    template; each agent's system part is encoded once and reused (checked exact against a whole
    encoding once per tokenizer), and the rest is encoded in batched calls of the fast tokenizer."""
    if max_seq_length < 2:
        raise ValueError(f"max_seq_length must be >= 2, got {max_seq_length}")
    result = CallEncoding()
    result.tokens = [None] * len(calls)
    prompts: dict[tuple[str, str], int] = {}
    prompt_texts: list[str] = []
    keep: list[int] = []
    for i, call in enumerate(calls):
        if not call.response.strip() or not (call.user_prompt or call.system_prompt):
            result.dropped_empty += 1
            continue
        key = (call.system_prompt, call.user_prompt)
        if key not in prompts:
            prompts[key] = len(prompt_texts)
            prompt_texts.append(render_prompt(tokenizer, call.system_prompt, call.user_prompt))
        keep.append(i)
    if not keep:
        return result
    prompt_ids, response_ids = _encode_prompts(tokenizer, [k[0] for k in prompts], prompt_texts,
                                               [calls[i].response for i in keep])
    eos = int(tokenizer.eos_token_id)
    for i, completion in zip(keep, response_ids, strict=True):
        call = calls[i]
        prompt = prompt_ids[prompts[(call.system_prompt, call.user_prompt)]]
        completion = [*completion, eos]
        if len(prompt) + len(completion) > max_seq_length:
            result.dropped_too_long += 1
            continue
        result.tokens[i] = CallTokens(prompt, completion)
    return result


def _encode_prompts(tokenizer: Any, systems: list[str], texts: list[str], responses: list[str]
                    ) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of rendered prompts and of responses, in one batched call of the tokenizer; the
    system part of each prompt is encoded once per system prompt."""
    exact = _split_exact.get(id(tokenizer))
    cuts = [system_cut(tokenizer, sp, text) if exact is not False else None for sp, text in zip(systems, texts,
                                                                                                 strict=True)]
    if exact is None:  # first use of this tokenizer: is a split encoding identical to a whole one?
        probe = next((i for i, c in enumerate(cuts) if c), None)
        if probe is not None:
            text, cut = texts[probe], cuts[probe]
            assert cut is not None
            whole = tokenizer(text, add_special_tokens=False)["input_ids"]
            parts = tokenizer([text[:cut], text[cut:]], add_special_tokens=False)["input_ids"]
            exact = _split_exact[id(tokenizer)] = whole == parts[0] + parts[1]
            if not exact:
                cuts = [None] * len(cuts)
    heads: dict[str, int] = {}
    head_texts: list[str] = []
    tails: list[str] = []
    for text, cut in zip(texts, cuts, strict=True):
        if cut is None:
            tails.append(text)
            continue
        head = text[:cut]
        if head not in heads:
            heads[head] = len(head_texts)
            head_texts.append(head)
        tails.append(text[cut:])
    ids = tokenizer([*head_texts, *tails, *responses], add_special_tokens=False)["input_ids"]
    head_ids, tail_ids = ids[:len(head_texts)], ids[len(head_texts):len(head_texts) + len(tails)]
    out = []
    for text, cut, tail in zip(texts, cuts, tail_ids, strict=True):
        out.append(tail if cut is None else head_ids[heads[text[:cut]]] + tail)
    return out, ids[len(head_texts) + len(tails):]
