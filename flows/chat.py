"""`ttt chat`: talk to a trained TtT checkpoint. Text or a WAV in; the answer's text on stdout as it is generated and
its speech in a WAV file written span by span while the answer is still being produced.

    ttt chat --checkpoint models/ttt --tokenizers models/tokenizers --text "Read this aloud." --out reply.wav
    ttt chat --checkpoint models/ttt --tokenizers models/tokenizers --wav question.wav --out reply.wav
    ttt chat --checkpoint models/ttt --tokenizers models/tokenizers --batch prompts.jsonl --out-dir replies/

Batch mode reads one JSON object per line, `{"id": "q1", "text": "..."}` or `{"id": "q2", "wav": "q2.wav"}` (a
relative `wav` path is resolved against the JSONL file's directory; `task` and `system` may override the defaults
per line), writes `<out-dir>/<id>.wav` for each and `<out-dir>/results.jsonl` (text, audio length, latency).

The prompt is the pack stage's chat document (`stages.documents.render_chat`): a system turn with the task's first
instruction (`--task`, default `qa` for speech in and `tts` for text in, the tasks whose answers are spoken) or
`--system`, the user turn (text, or the question's audio codes between `<|begin_of_audio|>` and
`<|end_of_audio|>`) and the `<|im_start|>assistant\\n` header, exactly as training documents lay it out.
Decoding is `model.sampler.generate` (TtT block-wise diffusion with an exact KV cache); each audio span goes to the
codec at once (`model.streaming.stream_pcm`) and its PCM is appended to `<out>.part`, flushed, and renamed to `<out>`
when the answer is complete. Input audio that is not 16 kHz mono is converted (and a note says so); anything the
command cannot use fails with a message naming the problem and the fix.

Heavy imports (torch, transformers, the codec) happen inside the functions, so `ttt --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from stages.atomic import atomic_write

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedTokenizerFast

    from model.modeling import TttForCausalLM
    from model.sampler import LogitsHook, SamplerConfig
    from model.vocab import TokenSpec
    from stages.audio_codec import SpeechCodec
    from stages.pack import TextEncoder

DEFAULT_TASK_TEXT = "tts"
DEFAULT_TASK_AUDIO = "qa"
#: Codes of the previous spans decoded with each new span (the embedded codec's decoder looks ~16 codes around).
DEFAULT_DECODE_CONTEXT = 8
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class ChatError(Exception):
    """A problem with the user's inputs, reported as one line without a traceback."""


@dataclass
class ChatAssets:
    """Everything one chat session loads once: the model, the tokenizer and the audio codec."""

    model: TttForCausalLM
    tokenizer: PreTrainedTokenizerFast
    spec: TokenSpec
    codec: SpeechCodec
    encode: TextEncoder

    @property
    def max_positions(self) -> int:
        return int(self.model.config.max_position_embeddings)


@dataclass(frozen=True)
class Reply:
    """One answer and how fast it came."""

    id: str
    text: str
    wav: str
    audio_tokens: int
    audio_seconds: float
    generated_tokens: int
    stop: str
    first_text_s: float | None
    first_audio_s: float | None
    total_s: float


# --- loading ---------------------------------------------------------------------------------------------------
def load_model(checkpoint: str | Path, device: str) -> TttForCausalLM:
    """A `TttForCausalLM` from a checkpoint directory of the train stage (HF format, safetensors), in eval mode."""
    import torch
    from transformers.utils import logging as hf_logging

    from model.modeling import TttForCausalLM

    path = Path(checkpoint)
    if not path.is_dir():
        raise ChatError(f"no checkpoint at {path}: train one first (`dvc repro train`) or pass --checkpoint DIR")
    if not (path / "config.json").is_file():
        raise ChatError(f"{path} has no config.json: not a checkpoint directory written by the train stage")
    if not (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").is_file():
        raise ChatError(f"{path} has no model.safetensors (only safetensors checkpoints are loaded)")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32  # bf16 is slower than fp32 on CPU
    hf_logging.disable_progress_bar()  # quiet by default: stdout/stderr carry the answer and one summary line
    model = TttForCausalLM.from_pretrained(path, attn_implementation="sdpa", dtype=dtype)
    return model.to(device).eval()


def load_assets(checkpoint: str | Path, tokenizers: str | Path, device: str) -> ChatAssets:
    """Model, tokenizer (`<tokenizers>/text`) and codec (`<tokenizers>/audio`), checked against each other."""
    from stages.pack import TextEncoder
    from stages.text_tokenizer import load_tokenizer
    from stages.tokenizers import TEXT_DIR, load_codec

    root = Path(tokenizers)
    if not (root / TEXT_DIR).is_dir():
        raise ChatError(f"no tokenizer at {root / TEXT_DIR}: run `dvc repro tokenizers` or pass --tokenizers DIR")
    model = load_model(checkpoint, device)
    tokenizer, spec = load_tokenizer(root / TEXT_DIR)
    if model.token_spec != spec:
        raise ChatError(f"the checkpoint {checkpoint} was trained with other token ids than the tokenizer in {root} "
                        "(its config.json token_spec differs from token_spec.json); use the pair from one pipeline run")
    try:
        codec = load_codec(root)
    except (FileNotFoundError, ValueError) as exc:  # incl. ExternalCodecUnavailable (a FileNotFoundError)
        raise ChatError(f"cannot load the audio codec from {root}: {exc}") from exc
    if codec.codebook_size != spec.audio_size:
        raise ChatError(f"the codec has {codec.codebook_size} codes but the vocabulary {spec.audio_size}")
    return ChatAssets(model, tokenizer, spec, codec, TextEncoder(tokenizer))


def read_wav(path: str | Path, err: TextIO) -> np.ndarray:
    """16 kHz mono float32 PCM from an audio file; other rates and channel counts are converted, with a note."""
    import soundfile as sf

    from stages.audio_io import SAMPLE_RATE, decode_audio, resample

    p = Path(path)
    if not p.is_file():
        raise ChatError(f"no audio file at {p}")
    try:
        info = sf.info(str(p))
        pcm, rate = decode_audio(p.read_bytes())
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ChatError(f"{p} is not a readable audio file (WAV, FLAC, ...): {exc}") from exc
    if pcm.size == 0:
        raise ChatError(f"{p} holds no audio samples")
    if rate != SAMPLE_RATE or info.channels != 1:
        print(f"note: {p} is {rate} Hz with {info.channels} channel(s); converted to {SAMPLE_RATE} Hz mono",
              file=err)
        pcm = resample(pcm, rate, SAMPLE_RATE)
    return pcm


# --- prompts ---------------------------------------------------------------------------------------------------
def build_prompt(assets: ChatAssets, *, text: str | None = None, codes: np.ndarray | None = None,
                 system: str | None = None) -> list[int]:
    """The pack stage's document for `[system,] user` up to and including `<|im_start|>assistant\\n`.

    Rendered by `render_chat` with an empty assistant turn and cut where the assistant's content would start, so
    the prompt cannot drift from the training layout.
    """
    from stages.documents import ChatTurn, render_chat

    if (text is None) == (codes is None):
        raise ValueError("give exactly one of text or codes")
    turns = [ChatTurn("system", system)] if system else []
    turns += [ChatTurn("user", text or "", codes), ChatTurn("assistant", "")]
    doc = render_chat(turns, assets.spec, assets.encode)
    return doc.ids[:doc.prompt_len]


def unconditional_prompt(assets: ChatAssets) -> list[int]:
    """The CFG branch's context (`model.sampler`): the prompt dropped, only `<|im_start|>assistant\n` kept."""
    from stages.documents import ChatTurn, render_chat

    doc = render_chat([ChatTurn("assistant", "")], assets.spec, assets.encode)
    return doc.ids[:doc.prompt_len]


def system_prompt(task: str | None, system: str | None, spoken_input: bool) -> str:
    """The system turn: `--system` verbatim, else the first instruction of the task (default by input kind)."""
    from stages.documents import INSTRUCTIONS

    if system is not None:
        return system
    name = task or (DEFAULT_TASK_AUDIO if spoken_input else DEFAULT_TASK_TEXT)
    if name not in INSTRUCTIONS:
        raise ChatError(f"unknown task {name!r}; known: {', '.join(INSTRUCTIONS)}")
    return INSTRUCTIONS[name][0]


def check_fits(prompt_len: int, config: SamplerConfig, max_positions: int) -> None:
    """Refuse a prompt that leaves no room for the answer within the model's context."""
    worst = prompt_len + config.max_new_tokens + config.max_audio_len + 1
    if worst > max_positions:
        room = max_positions - config.max_new_tokens - config.max_audio_len - 1
        raise ChatError(f"input too long: the prompt is {prompt_len} tokens and the answer may take "
                        f"{config.max_new_tokens} (+ one span of up to {config.max_audio_len} codes), but the model's "
                        f"context is {max_positions}; shorten the input to at most {max(room, 0)} tokens or lower "
                        "--max-new-tokens / --max-audio-len")


# --- answering -------------------------------------------------------------------------------------------------
class WavStream:
    """A 16-bit WAV written span by span to `<path>.part` (flushed after each span, so it can be played while
    growing) and renamed to `path` when complete; removed if the answer fails."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        import soundfile as sf

        self.path = path
        self.partial = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = sf.SoundFile(str(self.partial), "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                                  format="WAV")
        self.frames = 0

    def write(self, pcm: np.ndarray) -> None:
        import numpy as np

        self._file.write(np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0))
        self._file.flush()
        self.frames += len(pcm)

    def commit(self) -> None:
        self._file.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)


def respond(assets: ChatAssets, prompt_ids: Sequence[int], config: SamplerConfig, wav_path: Path, out: TextIO,
            reply_id: str = "reply", decode_context: int = DEFAULT_DECODE_CONTEXT,
            logits_hook: LogitsHook | None = None) -> Reply:
    """Generate one answer: text increments to `out` as they come, each audio span's PCM appended to the WAV."""
    from model.sampler import generate
    from model.streaming import Done, PcmChunk, TextDetokenizer, TextToken, stream_pcm
    from stages.audio_io import SAMPLE_RATE

    detok = TextDetokenizer(lambda ids: assets.tokenizer.decode(ids, skip_special_tokens=True))
    text: list[str] = []
    wav = WavStream(wav_path, SAMPLE_RATE)
    start = time.perf_counter()
    first_text = first_audio = None
    audio_tokens, done = 0, None
    uncond = unconditional_prompt(assets) if config.cfg_scale > 0 else ()
    try:
        events = generate(assets.model, prompt_ids, assets.spec, config, uncond_prompt_ids=uncond,
                          logits_hook=logits_hook)
        for event in stream_pcm(events, assets.codec.decode, decode_context):
            if isinstance(event, TextToken):
                piece = detok.push(event.token_id)
                if piece:
                    first_text = first_text if first_text is not None else time.perf_counter() - start
                    out.write(piece)
                    out.flush()
                    text.append(piece)
            elif isinstance(event, PcmChunk):
                wav.write(event.pcm)
                audio_tokens += len(event.span.codes)
                first_audio = first_audio if first_audio is not None else time.perf_counter() - start
            elif isinstance(event, Done):
                done = event
        tail = detok.flush()
        out.write(tail + "\n")
        out.flush()
        text.append(tail)
    except BaseException:
        wav.abort()
        raise
    wav.commit()
    if done is None:
        raise RuntimeError("the sampler ended without a Done event")
    return Reply(id=reply_id, text="".join(text), wav=str(wav_path), audio_tokens=audio_tokens,
                 audio_seconds=wav.frames / SAMPLE_RATE, generated_tokens=len(done.token_ids), stop=done.reason,
                 first_text_s=first_text, first_audio_s=first_audio, total_s=time.perf_counter() - start)


def prompt_for(assets: ChatAssets, config: SamplerConfig, *, text: str | None, wav: str | Path | None, task: str | None,
               system: str | None, err: TextIO) -> list[int]:
    """Read the input, render the prompt, check it fits the context."""
    if (text is None) == (wav is None):
        raise ChatError("give exactly one of a text or a wav file")
    codes = assets.codec.encode(read_wav(wav, err)) if wav is not None else None
    prompt = build_prompt(assets, text=text, codes=codes, system=system_prompt(task, system, wav is not None))
    check_fits(len(prompt), config, assets.max_positions)
    return prompt


def read_batch(path: str | Path) -> list[dict[str, Any]]:
    """Validated batch entries: `id` (safe as a file name, unique), exactly one of `text` / `wav`, optional
    `task` / `system`; `wav` made absolute relative to the JSONL's directory."""
    p = Path(path)
    if not p.is_file():
        raise ChatError(f"no batch file at {p}")
    entries: list[dict[str, Any]] = []
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ChatError(f"{p}:{n}: not JSON ({exc.msg})") from exc
        if not isinstance(entry, dict):
            raise ChatError(f"{p}:{n}: expected a JSON object")
        unknown = set(entry) - {"id", "text", "wav", "task", "system"}
        if unknown:
            raise ChatError(f"{p}:{n}: unknown keys {sorted(unknown)}")
        if ("text" in entry) == ("wav" in entry):
            raise ChatError(f"{p}:{n}: give exactly one of 'text' or 'wav'")
        entry["id"] = str(entry.get("id", f"{n:05d}"))
        if not _SAFE_ID.match(entry["id"]):
            raise ChatError(f"{p}:{n}: id {entry['id']!r} must be 1-128 of A-Z a-z 0-9 . _ -")
        if "wav" in entry:
            entry["wav"] = str((p.parent / entry["wav"]).resolve())
        entries.append(entry)
    ids = [e["id"] for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ChatError(f"{p}: duplicate ids {duplicates}")
    if not entries:
        raise ChatError(f"{p} holds no prompts")
    return entries


def _write_results(path: Path, replies: list[Reply]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(asdict(r)) + "\n" for r in replies)))


# --- command line ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ttt chat` options (registered by `flows.cli`)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the user's message as text")
    source.add_argument("--wav", help="the user's message as an audio file (16 kHz mono; others are converted)")
    source.add_argument("--batch", help="JSONL of prompts ({'id', 'text' | 'wav'[, 'task', 'system']} per line)")
    parser.add_argument("--checkpoint", default="models/ttt", help="checkpoint directory (default: models/ttt)")
    parser.add_argument("--tokenizers", default="models/tokenizers",
                        help="tokenizers stage output with text/ and audio/ (default: models/tokenizers)")
    parser.add_argument("--out", default="reply.wav", help="WAV to write for --text/--wav (default: reply.wav)")
    parser.add_argument("--out-dir", default="replies", help="output directory for --batch (default: replies)")
    parser.add_argument("--task", help="instruction set for the system turn (default: qa for --wav, tts for --text)")
    parser.add_argument("--system", help="system prompt text (overrides --task)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--max-audio-len", type=int, default=750, help="most codes in the tail span")
    parser.add_argument("--block-len", type=int, default=None,
                        help="masks per tail-span block (default: the chunk length; with one chunk span per block "
                             "the speech ends near its natural length, with 32 it ran 1.56x as long)")
    parser.add_argument("--chunk-len", type=int, default=None,
                        help="codes per interleaved chunk span (default: pack.audio_chunk of --params, the layout "
                             "the checkpoint was trained on)")
    parser.add_argument("--params", default="params.yaml", help="params file for the layout (default: params.yaml)")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps per block")
    parser.add_argument("--strategy", choices=("low_confidence", "threshold"), default="low_confidence")
    parser.add_argument("--threshold", type=float, default=0.9, help="commit confidence for --strategy threshold")
    parser.add_argument("--cfg-scale", type=float, default=0.0, help="classifier-free guidance for audio (0 = off)")
    parser.add_argument("--temperature", type=float, default=0.0, help="text sampling temperature (0 = greedy)")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--audio-temperature", type=float, default=0.0)
    parser.add_argument("--decode-context", type=int, default=DEFAULT_DECODE_CONTEXT,
                        help="codes of earlier spans decoded with each span for seamless audio (0 = off)")
    parser.add_argument("--seed", type=int, default=0)


def layout_chunk_len(params_path: str) -> int:
    """`pack.audio_chunk` of the params file, or the layout's default when there is no such file."""
    from stages.config import load_section
    from stages.pack import PackParams

    if not Path(params_path).is_file():
        return PackParams().audio_chunk
    return load_section(params_path, "pack", PackParams).audio_chunk


def sampler_config(args: argparse.Namespace) -> SamplerConfig:
    from model.sampler import SamplerConfig

    chunk_len = args.chunk_len or layout_chunk_len(args.params)
    try:
        return SamplerConfig(max_new_tokens=args.max_new_tokens, text_temperature=args.temperature, top_k=args.top_k,
                             top_p=args.top_p, audio_temperature=args.audio_temperature, chunk_len=chunk_len,
                             block_len=chunk_len if args.block_len is None else args.block_len,
                             steps_per_block=args.steps, strategy=args.strategy, threshold=args.threshold,
                             cfg_scale=args.cfg_scale, max_audio_len=args.max_audio_len, seed=args.seed)
    except ValueError as exc:
        raise ChatError(str(exc)) from exc


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`ttt chat`: 0 on success, 2 with a one-line message on bad inputs (streams default to stdout / stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        config = sampler_config(args)
        entries = read_batch(args.batch) if args.batch else None
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        assets = load_assets(args.checkpoint, args.tokenizers, device)
        if entries is None:
            prompt = prompt_for(assets, config, text=args.text, wav=args.wav, task=args.task, system=args.system,
                                err=err)
            reply = respond(assets, prompt, config, Path(args.out), out, decode_context=args.decode_context)
            print(f"wrote {reply.wav}: {reply.audio_seconds:.2f} s of audio, first audio after "
                  f"{_seconds(reply.first_audio_s)}", file=err)
            return 0
        out_dir = Path(args.out_dir)
        prompts = [prompt_for(assets, config, text=e.get("text"), wav=e.get("wav"), task=e.get("task", args.task),
                              system=e.get("system", args.system), err=err) for e in entries]  # fail before work
        replies = []
        for entry, prompt in zip(entries, prompts, strict=True):
            out.write(f"[{entry['id']}] ")
            replies.append(respond(assets, prompt, config, out_dir / f"{entry['id']}.wav", out, entry["id"],
                                   args.decode_context))
        _write_results(out_dir / "results.jsonl", replies)
        print(f"wrote {len(replies)} replies to {out_dir}", file=err)
        return 0
    except ChatError as exc:
        print(f"ttt chat: error: {exc}", file=err)
        return 2


def _seconds(value: float | None) -> str:
    return "n/a (no audio)" if value is None else f"{value:.2f} s"
