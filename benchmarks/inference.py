"""Inference speed: TtT's cached block-wise diffusion vs the full-recompute reference vs AR audio with a KV cache.

One model, one machine, one run. Each decoder writes the same answer layout, scripted on the random model with
`forcing_hook` (an untrained model would not emit begin-of-audio markers): `--chunks` times 13 text tokens +
`<|begin_of_audio|>` + 26 codes (+ the appended `<|end_of_audio|>`), then 13 text tokens and a tail span of
`--tail` codes closed by its end marker, 2 text tokens and `<|im_end|>`, after a prompt holding a
`--prompt-audio`-code user audio span. Every code is the model's own choice, so the work is real; the decoders:
- (a) `ours`: `model.sampler.generate` — exact prefix KV cache, span recomputed per denoising step;
- (b) `reference`: `benchmarks.reference_sampler` — the whole sequence recomputed for every token and step;
- (c) `ar`: `model.sampler.generate_ar` — audio token by token with a KV cache (causal mask).
(a) and (b) must choose identical tokens (checked; `same_tokens_as_reference`).

Figures per decoder (median over `--repeats` runs after one warm-up; the reference: `--reference-repeats`, no
warm-up):
- `audio_tokens_per_s`: audio codes / time spent on spans, where a span's time runs from the begin marker's
  event to the next text token's event (so it includes writing the span's KV and the logits of the next token,
  for every decoder alike) minus the time spent decoding PCM;
- `first_span_ms`: begin marker of the first span -> its codes are final; `first_pcm_ms`: -> its PCM is decoded
  by the codec (`--codec`: an embedded-codec-shaped decoder with random weights — same shapes and cost as a fitted
  one —, a fitted codec directory, or `none`);
- `answer_s`: the whole answer, PCM decoding excluded.
Each figure is given on two clocks, `wall` and `cpu` (this process's CPU time: on a shared, oversubscribed CPU
machine, with `--threads 1`, the stable measure of the work itself). Ratios: ours/reference and ours/ar audio
tokens per second, and the first-span latency speed-up, per clock.

Run::

    .venv/bin/python benchmarks/inference.py --threads 1   # CPU: tiny + medium -> reports/benchmarks/inference.json
    .venv/bin/python benchmarks/inference.py --threads 1 --prompt-audio 750 --steps 8 --repeats 2 \
        --out reports/benchmarks/inference_long_context.json   # a 30 s spoken question: ~770 prompt tokens
    .venv/bin/python benchmarks/inference.py --models tiny --steps 8 --repeats 1 --chunks 1 --tail 20  # smoke test
    python benchmarks/inference.py --device cuda --models gpu       # the 0.5B shape on a GPU
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, Python puts benchmarks/ first on sys.path, where a script named like a stdlib module (tokenize.py)
# would shadow it; the repository root goes there instead, before anything imports the stdlib module.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.reference_sampler import reference_generate  # noqa: E402
from benchmarks.results import write_json_atomic  # noqa: E402
from model.modeling import build_model  # noqa: E402
from model.sampler import LogitsHook, SamplerConfig, forcing_hook, generate, generate_ar  # noqa: E402
from model.streaming import AudioSpan, Done, Event, PcmChunk, TextToken, stream_pcm  # noqa: E402
from model.testing import toy_spec  # noqa: E402
from model.vocab import TokenSpec  # noqa: E402

#: name -> (size preset, overrides). `medium` is the larger shape that still decodes in minutes on 2 CPU cores.
MODELS: dict[str, tuple[str, dict[str, int]]] = {
    "tiny": ("tiny", {}),
    "medium": ("tiny", dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                            num_key_value_heads=2)),
    "gpu": ("gpu", {}),
}
TEXT_CHUNK = 13
Decoder = Callable[..., Iterator[Event]]


def answer_script(prompt_len: int, spec: TokenSpec, chunks: int, chunk_len: int, tail: int) -> tuple[LogitsHook, int]:
    """The forcing hook of the benchmark's answer layout and the number of audio codes it holds."""
    forced, pos = {}, prompt_len
    for _ in range(chunks):
        pos += TEXT_CHUNK
        forced[pos] = spec.begin_audio_id
        pos += 1 + chunk_len + 1
    pos += TEXT_CHUNK
    forced[pos] = spec.begin_audio_tail_id
    pos += 1 + tail
    forced[pos] = spec.end_audio_tail_id
    forced[pos + 3] = spec.im_end_id
    banned = [spec.pad_id, spec.im_end_id, spec.begin_audio_id, spec.begin_audio_tail_id, spec.end_audio_id,
              spec.end_audio_tail_id]
    return forcing_hook(forced, banned), chunks * chunk_len + tail


def make_prompt(spec: TokenSpec, audio_codes: int, seed: int) -> list[int]:
    """`<|im_start|>` system text, user audio span, `<|im_end|>`, `<|im_start|>` + 2 text tokens (the header)."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, spec.pad_id, (12,), generator=g).tolist()
    audio = (spec.audio_start + torch.randint(0, spec.audio_size, (audio_codes,), generator=g)).tolist()
    return [spec.im_start_id, *text[:10], spec.im_end_id, spec.im_start_id, spec.begin_audio_id, *audio,
            spec.end_audio_id, spec.im_end_id, spec.im_start_id, *text[10:]]


def make_decode(kind: str, audio_size: int) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
    """The PCM decoder for `first_pcm_ms`, and a description of it."""
    if kind == "none":
        return None, "none"
    from stages.audio_codec import AudioCodec, CodecConfig
    from stages.audio_codec.decoder import TokenMelDecoder

    if kind != "random":
        codec = AudioCodec.load(kind)
        return codec.decode, f"fitted codec {kind}"
    config = CodecConfig(codebook_size=audio_size)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        centroids = torch.randn(audio_size, config.stack * config.n_mels) - 8.0
        decoder = TokenMelDecoder(centroids, config.stack, config.n_mels, config.decoder_width)
    codec = AudioCodec(config, centroids, decoder)
    return codec.decode, (f"embedded codec shape, random weights ({config.token_rate_hz:g} Hz, "
                          f"{config.griffin_lim_iters} Griffin-Lim iterations)")


#: Clocks every figure is given in. `wall` is what a user waits; `cpu` is this process's CPU time, which on a shared,
#: oversubscribed CPU machine (run with `--threads 1`) is the stable measure of the work itself. On a GPU use `wall`.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
FIGURES = ("audio_tokens_per_s", "span_s", "answer_s", "first_span_ms", "first_pcm_ms")
Stamp = dict[str, float]


def stamp(device: torch.device) -> Stamp:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {name: clock() for name, clock in CLOCKS.items()}


def figures(stamps: list[tuple[Event | None, Stamp, Stamp]], clock: str, begins: tuple[int, int]) -> dict[str, Any]:
    """The figures of one answer on one clock from `(event, time, PCM decoding time so far)` stamps."""
    _, t0, d0 = stamps[0]
    span_start: tuple[float, float] | None = None
    span_s = 0.0
    first_begin = first_span = first_pcm = None
    codes = 0
    for event, t, decoded in stamps[1:]:
        now, dec = t[clock], decoded[clock]
        if isinstance(event, TextToken):
            if span_start is not None:
                span_s += (now - span_start[0]) - (dec - span_start[1])
                span_start = None
            if event.token_id in begins:
                span_start = (now, dec)
                first_begin = now if first_begin is None else first_begin
        elif isinstance(event, AudioSpan):
            codes += len(event.codes)
            first_span = now - first_begin if first_span is None else first_span
        elif isinstance(event, PcmChunk):
            first_pcm = now - first_begin if first_pcm is None else first_pcm
    _, t_end, d_end = stamps[-1]
    if span_start is not None or first_span is None:
        raise RuntimeError("the scripted answer must open and close its spans and end")
    return {"audio_tokens_per_s": codes / span_s, "span_s": span_s,
            "answer_s": (t_end[clock] - t0[clock]) - (d_end[clock] - d0[clock]), "first_span_ms": 1e3 * first_span,
            "first_pcm_ms": None if first_pcm is None else 1e3 * first_pcm}


def measure(events: Iterator[Event], decode: Callable[[np.ndarray], np.ndarray] | None,
            begins: tuple[int, int], device: torch.device) -> dict[str, Any]:
    """Timings of one answer on every clock (see the module docstring for the definitions)."""
    decoding = {name: 0.0 for name in CLOCKS}

    def timed_decode(codes: np.ndarray) -> np.ndarray:
        before = stamp(device)
        pcm = decode(codes)
        after = stamp(device)
        for name in decoding:
            decoding[name] += after[name] - before[name]
        return pcm

    stream = stream_pcm(events, timed_decode) if decode is not None else events
    stamps: list[tuple[Event | None, Stamp, Stamp]] = [(None, stamp(device), dict(decoding))]
    for event in stream:
        stamps.append((event, stamp(device), dict(decoding)))
    done = stamps[-1][0]
    if not isinstance(done, Done):
        raise RuntimeError("the sampler ended without a Done event")
    audio = sum(len(e.codes) for e, _, _ in stamps if isinstance(e, AudioSpan))
    return {**{clock: figures(stamps, clock, begins) for clock in CLOCKS}, "audio_tokens": audio,
            "answer_tokens": len(done.token_ids), "token_ids": done.token_ids}


def run_decoder(decoder: Decoder, model: Any, prompt: list[int], spec: TokenSpec, config: SamplerConfig,
                hook: LogitsHook, decode: Any, repeats: int, warmup: bool = True) -> dict[str, Any]:
    """`repeats` timed answers (after one untimed warm-up unless `warmup` is False); medians per clock."""
    begins = (spec.begin_audio_id, spec.begin_audio_tail_id)
    runs = [measure(decoder(model, prompt, spec, config, logits_hook=hook), decode, begins, model.device)
            for _ in range(repeats + warmup)][int(warmup):]

    def median(clock: str, key: str) -> float | None:
        values = [r[clock][key] for r in runs]
        return None if values[0] is None else round(statistics.median(values), 4)

    return {**{clock: {key: median(clock, key) for key in FIGURES} for clock in CLOCKS},
            "audio_tokens": runs[0]["audio_tokens"], "answer_tokens": runs[0]["answer_tokens"],
            "token_ids": runs[0]["token_ids"]}


def ratios(ours: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """ours / other audio tokens per second, and other / ours first-span latency, per clock."""
    return {f"{kind}_{clock}": round(value, 2) for clock in CLOCKS for kind, value in (
        ("audio_tokens_per_s", ours[clock]["audio_tokens_per_s"] / other[clock]["audio_tokens_per_s"]),
        ("first_span_speedup", other[clock]["first_span_ms"] / ours[clock]["first_span_ms"]))}


def summary(d: dict[str, Any]) -> str:
    w, c = d["wall"], d["cpu"]
    pcm = "" if c["first_pcm_ms"] is None else f", first PCM {c['first_pcm_ms']:.0f}"
    return (f"{c['audio_tokens_per_s']:.1f} audio tok/s cpu ({w['audio_tokens_per_s']:.1f} wall), "
            f"first span {c['first_span_ms']:.0f} ms cpu{pcm}")


def bench_model(name: str, args: argparse.Namespace, spec: TokenSpec, decode: Any) -> dict[str, Any]:
    preset, overrides = MODELS[name]
    model = build_model(preset, spec, seed=0, **overrides).to(args.device).eval()
    prompt = make_prompt(spec, args.prompt_audio, seed=0)
    hook, n_audio = answer_script(len(prompt), spec, args.chunks, args.chunk_len, args.tail)
    result: dict[str, Any] = {"model": name, "preset": preset, "overrides": overrides,
                              "parameters": sum(p.numel() for p in model.parameters()), "prompt_tokens": len(prompt),
                              "audio_tokens": n_audio, "settings": []}

    def config(steps: int) -> SamplerConfig:
        return SamplerConfig(max_new_tokens=4096, chunk_len=args.chunk_len, block_len=args.block_len,
                             steps_per_block=steps, max_audio_len=args.tail + 1)

    ar = run_decoder(generate_ar, model, prompt, spec, config(1), hook, decode, args.repeats)
    ar.pop("token_ids")
    result["ar"] = ar
    print(f"[{name}] ar: {summary(ar)}", flush=True)
    for steps in args.steps:
        ours = run_decoder(generate, model, prompt, spec, config(steps), hook, decode, args.repeats)
        ref = run_decoder(reference_generate, model, prompt, spec, config(steps), hook, decode,
                          args.reference_repeats, warmup=False)  # minutes per answer: warm-up effects are noise
        same = ours.pop("token_ids") == ref.pop("token_ids")
        setting = {"block_len": args.block_len, "chunk_len": args.chunk_len, "steps_per_block": steps,
                   "ours": ours, "reference": ref, "same_tokens_as_reference": same,
                   "ours_vs_reference": ratios(ours, ref), "ours_vs_ar": ratios(ours, ar)}
        result["settings"].append(setting)
        print(f"[{name}] steps {steps}: ours {summary(ours)}; reference {summary(ref)}; ours/reference "
              f"x{setting['ours_vs_reference']['audio_tokens_per_s_cpu']}, ours/ar "
              f"x{setting['ours_vs_ar']['audio_tokens_per_s_cpu']} (cpu clock); same tokens: {same}", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "medium"], choices=sorted(MODELS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--steps", type=int, nargs="+", default=[32, 8, 4], help="steps_per_block settings to measure")
    ap.add_argument("--block-len", type=int, default=32)
    ap.add_argument("--chunk-len", type=int, default=26)
    ap.add_argument("--chunks", type=int, default=3, help="interleaved chunk spans in the answer")
    ap.add_argument("--tail", type=int, default=60, help="codes in the tail span")
    ap.add_argument("--prompt-audio", type=int, default=100, help="codes of the user audio span in the prompt")
    ap.add_argument("--text-vocab", type=int, default=4096)
    ap.add_argument("--audio-size", type=int, default=4096)
    ap.add_argument("--codec", default="random", help="'random' (embedded-codec shape), a codec directory, or 'none'")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/inference.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = torch.device(args.device)
    spec = toy_spec(text_vocab=args.text_vocab, audio_size=args.audio_size)
    decode, codec = make_decode(args.codec, args.audio_size)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "device": str(args.device),
                    "gpu": torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else None,
                    "load_average_at_start": os.getloadavg(), "torch": torch.__version__},
        "codec": codec,
        "layout": {"chunks": args.chunks, "chunk_len": args.chunk_len, "tail": args.tail, "text_chunk": TEXT_CHUNK,
                   "prompt_audio": args.prompt_audio, "vocab": spec.vocab_size},
        "models": [bench_model(name, args, spec, decode) for name in args.models],
    }
    report["machine"]["load_average_at_end"] = os.getloadavg()
    write_json_atomic(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
