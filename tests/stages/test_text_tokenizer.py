"""Tests for stages/text_tokenizer.py: the trained BPE, the local-Qwen path and the spec check on load."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from model.vocab import (BEGIN_OF_AUDIO, BEGIN_OF_AUDIO_TAIL, END_OF_AUDIO, END_OF_AUDIO_TAIL, IM_END, IM_START,
                         MASK, PAD, SPECIAL_TOKENS, TokenSpec, audio_token)
from stages.text_tokenizer import SPEC_FILE, load_local_qwen_tokenizer, load_tokenizer, train_text_tokenizer

REPO = Path(__file__).resolve().parents[2]
VOCAB = 700
AUDIO = 64
WORDS = ("the cat dog sat on a mat and ran over lazy brown fox jumps hello world quickly house "
         "café naïve über 東京 straße 12 345 , . ? ! don't it's").split()


def corpus() -> list[str]:
    """~800 deterministic sentences with frequent words (so BPE learns real merges) and a few literal markers."""
    out = []
    for i in range(800):
        words = [WORDS[(i * 7 + j * 13 + i // 5) % len(WORDS)] for j in range(4 + i % 9)]
        out.append(" ".join(words))
    out += ["see <|mask|> here", "the cat<|im_end|>sat"] * 20  # marker text in training must not matter
    return out


def spec_ids(spec: TokenSpec) -> dict[str, int]:
    return {PAD: spec.pad_id, IM_START: spec.im_start_id, IM_END: spec.im_end_id, BEGIN_OF_AUDIO: spec.begin_audio_id,
            END_OF_AUDIO: spec.end_audio_id, BEGIN_OF_AUDIO_TAIL: spec.begin_audio_tail_id,
            END_OF_AUDIO_TAIL: spec.end_audio_tail_id, MASK: spec.mask_id}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TokenSpec]:
    out = tmp_path_factory.mktemp("bpe")
    spec = train_text_tokenizer((s for s in corpus()), VOCAB, AUDIO, out)  # a one-shot generator: streamed
    return out, spec


@pytest.fixture(scope="module")
def tok(trained):
    return AutoTokenizer.from_pretrained(trained[0])


# --- the trained BPE -------------------------------------------------------------------------------------------
def test_special_and_audio_tokens_round_trip(tok, trained):
    spec = trained[1]
    expected = spec_ids(spec) | {audio_token(c): spec.audio_id(c) for c in (0, 1, 17, AUDIO - 2, AUDIO - 1)}
    for token, token_id in expected.items():
        assert tok.encode(token, add_special_tokens=False) == [token_id], token
        assert tok.decode([token_id]) == token


def test_vocabulary_layout(tok, trained):
    """Text ids, then the specials in SPECIAL_TOKENS order, then every audio code contiguously, nothing after."""
    spec = trained[1]
    text_size = spec.pad_id
    assert 256 < text_size <= VOCAB
    assert [spec_ids(spec)[t] for t in SPECIAL_TOKENS] == list(range(text_size, text_size + len(SPECIAL_TOKENS)))
    assert spec.audio_start == text_size + len(SPECIAL_TOKENS)
    assert tok.convert_tokens_to_ids([audio_token(c) for c in range(AUDIO)]) == list(range(spec.audio_start,
                                                                                            spec.audio_end))
    assert len(tok) == spec.vocab_size == spec.audio_end


@pytest.mark.parametrize("text", [
    "the cat sat on a mat.",
    "Hello , world ! Spaces  twice,\ttabs and\nnew lines\n\n",
    "naïve café über straße, 東京 12345",
    "never seen: Ωμέγα, кириллица, 🙂🚀, ẞ, and 100,000.5 units",
    " leading and trailing spaces ",
])
def test_text_round_trips(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert all(i < tok.convert_tokens_to_ids(PAD) for i in ids)  # pure text never yields special/audio ids


def test_bpe_learned_merges(tok):
    assert len(tok.encode("the cat", add_special_tokens=False)) < len("the cat".encode())


@pytest.mark.parametrize("left,marker,right", [
    ("the cat", IM_END, "sat"), ("see ", MASK, " here"), ("dog", audio_token(7), "house"),
    ("", BEGIN_OF_AUDIO, "x"), ("x", END_OF_AUDIO_TAIL, ""),
])
def test_bpe_never_merges_across_a_special_token(tok, left, marker, right):
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    assert enc(left + marker + right) == enc(left) + [tok.convert_tokens_to_ids(marker)] + enc(right)


def test_skip_special_tokens_drops_markers_and_audio(tok):
    text = f"{IM_START}assistant\nhi {BEGIN_OF_AUDIO}{audio_token(3)}{audio_token(60)}{END_OF_AUDIO} there{IM_END}"
    assert tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=True) == "assistant\nhi  there"


def test_autotokenizer_config_and_chat_template(tok):
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == (IM_END, PAD, None)
    assert tok.encode("hi") == tok.encode("hi", add_special_tokens=False)  # no BOS/EOS injected
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    rendered = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered == (f"{IM_START}system\nBe brief.{IM_END}\n{IM_START}user\nhi{IM_END}\n{IM_START}assistant\n")


def test_training_is_deterministic_across_processes_and_input_order(trained, tmp_path):
    """Same texts -> identical files, in this process and in a fresh one (other hash seeds) fed them reversed."""
    again = tmp_path / "again"
    train_text_tokenizer(iter(corpus()), VOCAB, AUDIO, again)
    names = sorted(p.name for p in trained[0].iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert all(sha(trained[0] / n) == sha(again / n) for n in names)

    other = tmp_path / "other"
    code = ("import sys; from tests.stages.test_text_tokenizer import corpus, VOCAB, AUDIO;"
            "from stages.text_tokenizer import train_text_tokenizer;"
            f"train_text_tokenizer(reversed(corpus()), VOCAB, AUDIO, sys.argv[1])")
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(other)], cwd=REPO, env=env, check=True, capture_output=True)
    assert sha(other / "tokenizer.json") == sha(trained[0] / "tokenizer.json")


def test_training_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="no training text"):
        train_text_tokenizer(iter([]), VOCAB, AUDIO, tmp_path / "empty")
    with pytest.raises(ValueError, match="byte symbols"):
        train_text_tokenizer(["abc"], 256, AUDIO, tmp_path / "small")


# --- load_tokenizer ----------------------------------------------------------------------------------------------
def test_load_tokenizer_returns_matching_spec(trained):
    tokenizer, spec = load_tokenizer(trained[0])
    assert spec == trained[1] == TokenSpec.from_json(trained[0] / SPEC_FILE)
    assert tokenizer.convert_tokens_to_ids(MASK) == spec.mask_id


def test_load_tokenizer_rejects_a_stale_spec(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained[0], copy)
    data = json.loads((copy / SPEC_FILE).read_text())
    data["mask_id"], data["pad_id"] = data["pad_id"], data["mask_id"]
    (copy / SPEC_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="mask_id"):
        load_tokenizer(copy)


def test_load_tokenizer_missing_dir_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*token_spec\.json"):
        load_tokenizer(tmp_path / "nowhere")


# --- the local Qwen2.5 path --------------------------------------------------------------------------------------
QWEN_EXTRA = ["<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|fim_pad|>"]


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stand-in for a Qwen2.5 tokenizer dir: Qwen2Tokenizer over a small BPE, Qwen's specials, base eos."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(bpe.to_str())["model"]
    qwen = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], unk_token=None,
                          eos_token=PAD, pad_token=PAD)
    qwen.add_special_tokens({"additional_special_tokens": QWEN_EXTRA})
    out = tmp_path_factory.mktemp("qwen")
    qwen.save_pretrained(out)
    return out


def test_qwen_path_keeps_base_ids_and_appends_ours(qwen_dir, tmp_path):
    base = AutoTokenizer.from_pretrained(qwen_dir)
    spec = load_local_qwen_tokenizer(qwen_dir, 32, tmp_path / "out")
    tokenizer, loaded = load_tokenizer(tmp_path / "out")
    assert loaded == spec
    ids = spec_ids(spec)
    for token in (PAD, IM_START, IM_END):  # Qwen already has them: same ids
        assert ids[token] == base.convert_tokens_to_ids(token)
    new = [t for t in SPECIAL_TOKENS if t not in (PAD, IM_START, IM_END)]
    assert [ids[t] for t in new] == list(range(len(base), len(base) + len(new)))
    assert (spec.audio_start, spec.vocab_size) == (len(base) + len(new), len(base) + len(new) + 32)
    for token, token_id in ids.items() | {(audio_token(0), spec.audio_start), (audio_token(31), spec.audio_end - 1)}:
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
        assert tokenizer.decode([token_id]) == token
    text = "the lazy dog don't jump, 東京!"
    assert tokenizer.encode(text) == base.encode(text)
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert (tokenizer.eos_token, tokenizer.pad_token) == (IM_END, PAD)
    assert tokenizer.convert_tokens_to_ids("<|fim_pad|>") == base.convert_tokens_to_ids("<|fim_pad|>")


def test_qwen_path_missing_or_incomplete_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent-qwen"):
        load_local_qwen_tokenizer(tmp_path / "absent-qwen", 32, tmp_path / "out")
    partial = tmp_path / "partial-qwen"
    partial.mkdir()
    (partial / "tokenizer_config.json").write_text("{}")
    (partial / "vocab.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"partial-qwen.*tokenizer\.json \(or merges\.txt\)"):
        load_local_qwen_tokenizer(partial, 32, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_qwen_path_refuses_a_tokenizer_that_already_has_audio_tokens(trained, tmp_path):
    with pytest.raises(ValueError, match="already has audio tokens"):
        load_local_qwen_tokenizer(trained[0], AUDIO, tmp_path / "out")
