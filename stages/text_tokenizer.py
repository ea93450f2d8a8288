"""The text side of the shared vocabulary: a byte-level BPE (tiny profile) or a local Qwen2.5 tokenizer (full).

Both paths end in the same directory, loadable with `transformers.AutoTokenizer.from_pretrained(out_dir)`:
`tokenizer.json`, `tokenizer_config.json` (eos `<|im_end|>`, pad `<|endoftext|>`), `chat_template.jinja`
(Qwen `<|im_start|>role\\n...<|im_end|>\\n` layout) and `token_spec.json` (`model.vocab.TokenSpec`, the resolved
ids every later stage and the model read instead of literals). The vocabulary is laid out as

    [text BPE ids] [our special tokens the base lacks, in SPECIAL_TOKENS order] [audio codes 0 .. audio_size-1]

All added tokens are *special* added tokens: the tokenizer matches them before pre-tokenisation, so BPE never
merges across one, each encodes to exactly one id, and `decode(..., skip_special_tokens=True)` drops them.

The `tokenizers` stage calls `train_text_tokenizer` or `load_local_qwen_tokenizer` (per its params) and every
consumer calls `load_tokenizer`, which refuses a directory whose `token_spec.json` disagrees with its tokenizer.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN_PRETOKENIZE_REGEX

from model.vocab import IM_END, IM_START, PAD, SPECIAL_TOKENS, TokenSpec, audio_token

SPEC_FILE = "token_spec.json"

#: Qwen2.5's chat layout without its tool-calling and default-system-prompt branches, used by both profiles so
#: `apply_chat_template` renders documents exactly as the pack stage lays them out.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    f"{{{{- '{IM_START}' + message['role'] + '\\n' + message['content'] + '{IM_END}' + '\\n' }}}}"
    "{%- endfor %}"
    f"{{%- if add_generation_prompt %}}{{{{- '{IM_START}assistant\\n' }}}}{{%- endif %}}"
)

#: Size of the byte-level alphabet every trained vocabulary starts from (so any UTF-8 text encodes, no unk).
_BYTE_ALPHABET = len(pre_tokenizers.ByteLevel.alphabet())


def train_text_tokenizer(texts: Iterable[str], vocab_size: int, audio_size: int, out_dir: str | Path,
                         *, min_frequency: int = 2) -> TokenSpec:
    """Train a byte-level BPE on `texts`, add our special and audio tokens, save it to `out_dir`.

    `vocab_size` is the size of the *text* vocabulary (256 byte symbols + merges); the special and audio tokens
    come on top, so the final vocabulary is `vocab_size + len(SPECIAL_TOKENS) + audio_size` (fewer text ids if
    the corpus has fewer pairs occurring `min_frequency` times). Pre-tokenisation is Qwen2's (its split regex,
    digits one by one) without its NFC normaliser, so `decode(encode(s)) == s` for every string.

    `texts` is consumed once, as a stream. Training has no randomness: the trainer breaks count ties by pair
    ids, which the fixed byte alphabet makes independent of input order and hashing, so the same texts give
    byte-identical files (the tests check it across processes).
    """
    if vocab_size <= _BYTE_ALPHABET:
        raise ValueError(f"vocab_size must exceed the {_BYTE_ALPHABET} byte symbols, got {vocab_size}")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    stream = iter(texts)
    first = next(stream, None)
    if first is None:
        raise ValueError("no training text: the text tokenizer needs at least one sentence")
    bpe.train_from_iterator(itertools.chain([first], stream), trainer=trainer)
    return _extend_and_save(PreTrainedTokenizerFast(tokenizer_object=bpe), audio_size, out_dir)


def load_local_qwen_tokenizer(model_dir: str | Path, audio_size: int, out_dir: str | Path) -> TokenSpec:
    """Load a Qwen2.5 tokenizer from a local directory (never the hub), extend it, save it to `out_dir`.

    Qwen2.5 already has `<|im_start|>`, `<|im_end|>` and `<|endoftext|>`; the audio markers, the mask token and
    the audio codes are appended after its last id. The model's embedding must be resized to
    `TokenSpec.vocab_size` (Qwen2.5's checkpoints reserve only a few hundred spare rows).
    """
    src = Path(model_dir)
    missing = _missing_qwen_files(src)
    if missing:
        raise FileNotFoundError(f"{src}: not a usable local Qwen2.5 tokenizer directory; missing {missing}")
    tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(f"{src}: expected a fast (tokenizers-backed) tokenizer, got {type(tokenizer).__name__}")
    return _extend_and_save(tokenizer, audio_size, out_dir)


def load_tokenizer(tokenizer_dir: str | Path) -> tuple[PreTrainedTokenizerFast, TokenSpec]:
    """Load a directory written by this module and check that its `token_spec.json` matches the tokenizer.

    A mismatch means the tokenizer was edited or swapped after its spec was written; every id-based step (the
    layout, the masks, the losses) would then silently use wrong ids, so it fails here instead.
    """
    path = Path(tokenizer_dir)
    missing = [n for n in ("tokenizer.json", "tokenizer_config.json", SPEC_FILE) if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a tokenizer directory of the tokenizers stage; missing {missing}")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    spec = TokenSpec.from_json(path / SPEC_FILE)
    resolved = TokenSpec.from_tokenizer(tokenizer, spec.audio_size)
    if resolved != spec:
        stored, actual = spec.to_dict(), resolved.to_dict()
        diff = {k: (stored[k], actual[k]) for k in stored if stored[k] != actual[k]}
        raise ValueError(f"{path / SPEC_FILE} disagrees with the tokenizer (field: (spec, tokenizer)): {diff}")
    return tokenizer, spec


def _missing_qwen_files(src: Path) -> list[str]:
    """Files a local tokenizer directory lacks: its config plus tokenizer.json (or vocab.json + merges.txt)."""
    if not src.is_dir():
        return ["the directory itself"]
    missing = [] if (src / "tokenizer_config.json").is_file() else ["tokenizer_config.json"]
    if not (src / "tokenizer.json").is_file():
        slow = [n for n in ("vocab.json", "merges.txt") if not (src / n).is_file()]
        if slow:
            missing.append(f"tokenizer.json (or {' + '.join(slow)})")
    return missing


def _extend_and_save(tokenizer: PreTrainedTokenizerFast, audio_size: int, out_dir: str | Path) -> TokenSpec:
    """Append the special tokens the tokenizer lacks and the audio codes, then save atomically with the spec."""
    vocab = tokenizer.get_vocab()
    audio = [audio_token(code) for code in range(audio_size)]
    clash = [t for t in audio if t in vocab]
    if clash:
        raise ValueError(f"the base tokenizer already has audio tokens (e.g. {clash[:3]}); start from a tokenizer "
                         "without them so the audio codes get one contiguous id range")
    new = [t for t in SPECIAL_TOKENS if t not in vocab] + audio
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in new], special_tokens=True)
    tokenizer.eos_token, tokenizer.pad_token = IM_END, PAD
    tokenizer.chat_template = CHAT_TEMPLATE
    spec = TokenSpec.from_tokenizer(tokenizer, audio_size)
    _save_atomically(tokenizer, spec, Path(out_dir))
    return spec


def _save_atomically(tokenizer: PreTrainedTokenizerFast, spec: TokenSpec, out: Path) -> None:
    """Write every file to a temp dir, then move each into `out` with `os.replace`; the spec goes last.

    The old spec is removed first, so a crash part-way leaves a directory that `load_tokenizer` rejects
    instead of a new tokenizer paired with a stale spec.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC_FILE).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-") as tmp:
        tokenizer.save_pretrained(tmp)
        spec.save(Path(tmp) / SPEC_FILE)
        names = sorted(os.listdir(tmp), key=lambda n: (n == SPEC_FILE, n))
        for name in names:
            os.replace(Path(tmp) / name, out / name)
