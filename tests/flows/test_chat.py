"""`ttt chat`: prompt layout, streaming to stdout and to the WAV, batch mode and clear input errors.

The assets are built small in a temporary directory exactly as the pipeline lays them out: a BPE tokenizer
(`<dir>/text`), a centroid codec (`<dir>/audio`) and a random tiny checkpoint saved with `save_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from flows.chat import ChatAssets, build_prompt, load_assets, respond, unconditional_prompt
from flows.cli import main
from model.modeling import build_model
from model.sampler import SamplerConfig, forcing_hook
from stages.audio_codec import AudioCodec, CodecConfig
from stages.documents import INSTRUCTIONS
from stages.text_tokenizer import train_text_tokenizer

SR = 16000
CODEC = CodecConfig(codebook_size=16, decoder="centroid", kmeans_iters=5, griffin_lim_iters=4)
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             initializer_range=0.5)
SENTENCES = ["What is the capital of France?", "Paris is the capital of France.", "Read this aloud, please.",
             "The quick brown fox jumps over the lazy dog.", "system", "user", "assistant", "\n"]


def tone(freq: float, seconds: float, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * np.clip(np.sin(np.pi * t / seconds) * 3, 0, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("chat")
    texts = SENTENCES * 3 + [t for variants in INSTRUCTIONS.values() for t in variants]
    spec = train_text_tokenizer(texts, 300, CODEC.codebook_size, root / "tokenizers" / "text")
    clips = [tone(f, s) for f, s in ((220, 1.0), (330, 0.7), (500, 1.2), (800, 0.9), (1200, 0.6), (2500, 0.5))]
    AudioCodec.fit(clips, CODEC, seed=0).save(root / "tokenizers" / "audio")
    build_model("tiny", spec, seed=0, **SMALL).save_pretrained(root / "ckpt")
    return root / "ckpt", root / "tokenizers"


@pytest.fixture(scope="module")
def assets(dirs: tuple[Path, Path]) -> ChatAssets:
    return load_assets(dirs[0], dirs[1], "cpu")


def chat(dirs: tuple[Path, Path], *args: str) -> list[str]:
    return ["chat", "--checkpoint", str(dirs[0]), "--tokenizers", str(dirs[1]), "--max-new-tokens", "24",
            "--max-audio-len", "40", "--decode-context", "0", *args]


def test_prompt_is_the_chat_template_rendering(assets: ChatAssets) -> None:
    prompt = build_prompt(assets, text="What is the capital of France?", system="Answer briefly.")
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "What is the capital of France?"}]
    expected = assets.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert assets.tokenizer.decode(prompt) == expected
    spoken = build_prompt(assets, codes=np.array([3, 1, 4]))
    s = assets.spec
    begin = spoken.index(s.begin_audio_id)
    assert spoken[begin + 1:begin + 5] == [s.audio_id(3), s.audio_id(1), s.audio_id(4), s.end_audio_id]
    header = unconditional_prompt(assets)
    assert assets.tokenizer.decode(header) == "<|im_start|>assistant\n" and prompt[-len(header):] == header


def test_reply_streams_each_span_to_the_wav_while_generating(assets: ChatAssets, tmp_path: Path) -> None:
    s = assets.spec
    prompt = build_prompt(assets, text="Read this aloud, please.", system=INSTRUCTIONS["tts"][0])
    P = len(prompt)
    hook = forcing_hook({P + 2: s.begin_audio_id, P + 31: s.begin_audio_tail_id, P + 32 + 9: s.end_audio_tail_id,
                         P + 45: s.im_end_id},
                        [s.pad_id, s.im_end_id, s.begin_audio_id, s.begin_audio_tail_id, s.end_audio_id,
                         s.end_audio_tail_id])
    out = tmp_path / "reply.wav"
    per_token = assets.codec.config.samples_per_token
    seen_on_disk: list[int] = []
    decode = assets.codec.decode

    def watching_decode(codes: np.ndarray) -> np.ndarray:
        partial = out.with_name(out.name + ".part")
        seen_on_disk.append(sf.info(str(partial)).frames)
        return decode(codes)

    streamed = ChatAssets(assets.model, assets.tokenizer, assets.spec,
                          type("Codec", (), {"decode": staticmethod(watching_decode)})(), assets.encode)
    with open(tmp_path / "stdout.txt", "w") as text_out:
        reply = respond(streamed, prompt, SamplerConfig(max_new_tokens=80), out, text_out, logits_hook=hook,
                        decode_context=4)
    assert seen_on_disk == [0, 26 * per_token]  # the chunk span was on disk before the tail span was decoded
    assert reply.audio_tokens == 26 + 9 and reply.stop == "eos"
    data, rate = sf.read(str(out))
    assert rate == SR and data.ndim == 1 and len(data) == (26 + 9) * per_token
    assert not out.with_name(out.name + ".part").exists()
    assert reply.first_audio_s is not None and reply.first_audio_s < reply.total_s
    assert (tmp_path / "stdout.txt").read_text() == reply.text + "\n"


def test_text_in_text_and_wav_out(dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "a.wav"
    assert main(chat(dirs, "--text", "What is the capital of France?", "--out", str(out))) == 0
    captured = capsys.readouterr()
    assert captured.out.endswith("\n") and f"wrote {out}" in captured.err
    info = sf.info(str(out))
    assert info.samplerate == SR and info.channels == 1


def test_chunk_and_block_len_follow_the_params_layout_unless_given(tmp_path: Path) -> None:
    import argparse

    from flows.chat import add_arguments, sampler_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    params = tmp_path / "params.yaml"
    params.write_text("pack:\n  text_chunk: 3\n  audio_chunk: 24\n")

    def lengths(*args: str) -> tuple[int, int]:
        config = sampler_config(parser.parse_args(["--text", "hi", *args]))
        return config.chunk_len, config.block_len

    assert lengths("--params", str(params)) == (24, 24)
    assert lengths("--params", str(params), "--chunk-len", "7") == (7, 7)
    assert lengths("--params", str(params), "--block-len", "32") == (24, 32)
    assert lengths("--params", str(tmp_path / "none.yaml")) == (26, 26)


def test_wav_in_is_converted_to_16k_mono(dirs: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    question = tmp_path / "q.wav"
    stereo = np.stack([tone(300, 0.8, 22050), tone(300, 0.8, 22050)], axis=1)
    sf.write(str(question), stereo, 22050)
    assert main(chat(dirs, "--wav", str(question), "--out", str(tmp_path / "r.wav"))) == 0
    assert "22050 Hz with 2 channel(s); converted to 16000 Hz mono" in capsys.readouterr().err
    assert (tmp_path / "r.wav").is_file()


def test_batch_mode(dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sf.write(str(tmp_path / "q.wav"), tone(440, 0.5), SR)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "t1", "text": "Read this aloud, please."}) + "\n\n"
                       + json.dumps({"id": "a1", "wav": "q.wav", "task": "asr"}) + "\n")
    out_dir = tmp_path / "replies"
    assert main(chat(dirs, "--batch", str(prompts), "--out-dir", str(out_dir))) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("[t1] ") and "\n[a1] " in stdout
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t1", "a1"]
    assert all(Path(r["wav"]).is_file() and r["stop"] in ("eos", "length") for r in rows)


@pytest.mark.parametrize("case, message", [
    ("missing checkpoint", "no checkpoint at"),
    ("not audio", "not a readable audio file"),
    ("too long", "input too long"),
    ("bad batch", "prompts.jsonl:2: give exactly one of 'text' or 'wav'"),
    ("unknown task", "unknown task 'poetry'"),
])
def test_clear_errors(dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, case: str,
                      message: str) -> None:
    (tmp_path / "notes.wav").write_text("not audio at all")
    (tmp_path / "prompts.jsonl").write_text('{"text": "hi"}\n{"text": "a", "wav": "b.wav"}\n')
    args = {
        "missing checkpoint": ["--text", "hi", "--checkpoint", str(tmp_path / "nowhere")],
        "not audio": ["--wav", str(tmp_path / "notes.wav")],
        "too long": ["--text", "hi " * 50, "--max-new-tokens", "4000", "--max-audio-len", "60"],
        "bad batch": ["--batch", str(tmp_path / "prompts.jsonl")],
        "unknown task": ["--text", "hi", "--task", "poetry"],
    }[case]
    assert main(chat(dirs, "--out", str(tmp_path / "x.wav"), *args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("ttt chat: error: ") and message in err
    assert not (tmp_path / "x.wav").exists()
