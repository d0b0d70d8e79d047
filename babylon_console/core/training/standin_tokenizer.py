"""A stand-in tokenizer for the offline path, built on this machine (no model hub needed).

The offline backend trains no language model, but it must see the same trainable turns an ART
backend would: `Choice`s carrying token ids. With no `BABYLON_TOKENIZER` and no hub access there
is no base-model tokenizer to load, so the offline path builds this one once: a byte-level BPE
trained on simulated Babylon prompts and responses, with a ChatML chat template
(`<|im_start|>role ... <|im_end|>`, as Qwen models use) and `<|im_end|>` as end of sequence. It is
saved as an ordinary Hugging Face tokenizer directory and loaded through the same
`art.tokenizer.get_tokenizer` path as a real one. It is a stand-in: token counts it gives are
not those of any real base model.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import orjson

LABEL = "offline stand-in tokenizer (byte-level BPE trained on simulated prompts)"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DIRECTORY_NAME = "standin-bpe-v1"


def simulated_corpus(windows: int = 3, agents: int = 8) -> list[str]:
    """System prompts, user prompts and responses of a few simulated windows."""
    from ..sim.simulation import Simulation

    sim = Simulation(seed=11, n_agents=agents, steps_per_window=8)
    texts: list[str] = []
    start = datetime(2026, 1, 1)
    for w in range(windows):
        result = sim.simulate_window(start.replace(hour=w))
        for row in result.llm_calls:
            texts.extend(str(v) for v in row if isinstance(v, str) and len(v) > 16)
    return texts


def build_tokenizer(directory: Path, corpus: Iterable[str], vocab_size: int = 4096, *,
                    special_tokens: tuple[str, ...] = SPECIAL_TOKENS, chat_template: str = CHATML_TEMPLATE,
                    eos_token: str = "<|im_end|>", bos_token: str | None = None,
                    pad_token: str = "<|endoftext|>") -> Path:
    """Train a byte-level BPE on `corpus` and save it as a tokenizer directory (atomically)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        tok.save(str(tmp / "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": 32768,
            "bos_token": bos_token,
            "eos_token": eos_token,
            "pad_token": pad_token,
            "unk_token": None,
            "chat_template": chat_template,
            "clean_up_tokenization_spaces": False,
            "babylon_console": LABEL,
        }
        (tmp / "tokenizer_config.json").write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
        try:
            os.rename(tmp, directory)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def ensure_standin_tokenizer(data_dir: Path) -> Path:
    """The stand-in tokenizer directory under `data_dir`, built on first use (about a second)."""
    directory = Path(data_dir) / "tokenizers" / DIRECTORY_NAME
    if not (directory / "tokenizer.json").is_file():
        build_tokenizer(directory, simulated_corpus())
    return directory
