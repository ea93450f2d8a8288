"""Round-trip benchmark of the embedded audio codec: token rate x codebook size x decoder -> judge WER, speed.

Builds a small offline corpus with flite voices (slt, rms, awb; kal16 is left out because the judge already
misses ~28 % of its words on the originals): varied sentences from country facts (countryinfo, pycountry),
numbers spelled with num2words and everyday templates. The fit clips and the held-out dev clips never share a
sentence. For each setting the codec is fitted once (k-means + learned decoder); the dev clips are encoded and
decoded by the centroid decoder and by the learned decoder, and the whisper tiny.en judge transcribes the
round trips. Figures: judge WER/CER (originals as the floor), fit time, encode and decode speed as multiples of
real time, both per wall second (what a user waits; depends on how busy the machine is) and per CPU second of
this process (load-independent throughput per core). The load average at the end is recorded with them.

Run (about 15 minutes on an idle 2-core machine; much longer when it is shared)::

    .venv/bin/python -m benchmarks.audio_codec          # full table -> reports/benchmarks/audio_codec.json
    .venv/bin/python -m benchmarks.audio_codec --fit-clips 60 --dev-clips 8 --settings 25:256 --decoder-steps 50
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.results import write_json_atomic
from stages.asr_judge import AsrJudge, cer, wer
from stages.audio_codec import AudioCodec, CodecConfig

VOICES = ("slt", "rms", "awb")
SAMPLE_RATE = 16000
DEFAULT_SETTINGS = ("50:4096", "25:4096", "25:1024", "12.5:4096")

_SUBJECTS = ("my neighbor", "the old captain", "a young doctor", "our teacher", "the baker", "his sister",
             "the pilot", "a quiet student", "the farmer", "her grandmother", "the mayor", "a tired runner")
_VERBS = ("found", "painted", "carried", "repaired", "ordered", "described", "borrowed", "sold", "watched",
          "cleaned", "forgot", "delivered")
_OBJECTS = ("a wooden boat", "the blue umbrella", "three heavy boxes", "an old map of the city", "the broken radio",
            "a basket of apples", "the kitchen window", "a pair of leather boots", "the yellow bicycle",
            "a letter from the bank", "the garden fence", "a jar of honey")
_WHEN = ("before lunch", "on Monday morning", "after the storm", "during the long winter", "last summer",
         "late at night", "on the way home", "before the train left", "at the market", "in the early evening")
_THINGS = ("books", "ships", "trees", "lamps", "chairs", "birds", "coins", "bottles", "tickets", "horses")


def _country_facts() -> list[dict[str, object]]:
    import countryinfo
    import pycountry

    facts = []
    for c in countryinfo.all_countries():
        info = c.info()
        if not (info.get("name") and info.get("capital") and info.get("population") and info.get("region")):
            continue
        currency = pycountry.currencies.get(alpha_3=(info.get("currencies") or [""])[0])
        language = pycountry.languages.get(alpha_2=(info.get("languages") or [""])[0])
        facts.append({**info, "currency_name": currency.name if currency else None,
                      "language_name": language.name if language else None})
    return facts


def make_sentences(n: int, seed: int) -> list[str]:
    """`n` distinct varied English sentences (numbers already spelled out, so references need no guessing)."""
    from num2words import num2words

    rng = random.Random(seed)
    facts = _country_facts()

    def country() -> str:
        f = rng.choice(facts)
        kind = rng.randrange(6)
        if kind == 0:
            return f"The capital of {f['name']} is {f['capital']}."
        if kind == 1:
            return f"{f['name']} is home to about {num2words(round(int(f['population']), -3))} people."
        if kind == 2 and f["currency_name"]:
            return f"In {f['name']} people pay with the {f['currency_name']}."
        if kind == 3 and f["language_name"]:
            return f"Many people in {f['name']} speak {f['language_name']}."
        if kind == 4 and f.get("subregion"):
            return f"{f['name']} lies in {f['subregion']}, and its capital is {f['capital']}."
        return f"{f['capital']} is a city in {f['region']}."

    def everyday() -> str:
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_WHEN)}."
        return s[0].upper() + s[1:]

    def numbers() -> str:
        k = rng.randrange(3)
        if k == 0:
            return f"We counted {num2words(rng.randrange(2, 9999))} {rng.choice(_THINGS)} {rng.choice(_WHEN)}."
        if k == 1:
            return f"The box weighs {num2words(rng.randrange(2, 500))} grams and costs {num2words(rng.randrange(2, 90))} dollars."
        return f"Room number {num2words(rng.randrange(100, 999))} is on the {num2words(rng.randrange(1, 30), to='ordinal')} floor."

    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = rng.choice((country, everyday, everyday, numbers))()
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def synthesize(texts: list[str], workdir: Path) -> list[np.ndarray]:
    """16 kHz float PCM per text, voices assigned round-robin (two flite processes at a time)."""

    def one(i: int) -> np.ndarray:
        path = workdir / f"{i}.wav"
        subprocess.run(["flite", "-voice", VOICES[i % len(VOICES)], "-t", texts[i], "-o", str(path)],
                       check=True, capture_output=True)
        pcm, sr = sf.read(path, dtype="float32")
        if sr != SAMPLE_RATE:
            import librosa

            pcm = librosa.resample(pcm, orig_sr=sr, target_sr=SAMPLE_RATE)
        return pcm

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, range(len(texts))))


def _score(judge: AsrJudge, refs: list[str], clips: list[np.ndarray]) -> dict[str, float]:
    hyps = judge.transcribe_batch(clips)
    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps)}


def run(args: argparse.Namespace) -> dict[str, object]:
    texts = make_sentences(args.fit_clips + args.dev_clips, args.seed)
    fit_texts, dev_texts = texts[: args.fit_clips], texts[args.fit_clips :]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit_clips = synthesize(fit_texts, Path(tmp))
        dev_clips = synthesize(dev_texts, Path(tmp))
        synth_s = time.perf_counter() - t0
    fit_seconds = sum(len(c) for c in fit_clips) / SAMPLE_RATE
    dev_seconds = sum(len(c) for c in dev_clips) / SAMPLE_RATE
    print(f"corpus: {len(fit_clips)} fit clips ({fit_seconds:.0f} s), {len(dev_clips)} dev clips ({dev_seconds:.0f} s), "
          f"flite {synth_s:.1f} s", flush=True)

    judge = AsrJudge()
    originals = _score(judge, dev_texts, dev_clips)
    print(f"originals: WER {originals['wer']:.3f}", flush=True)
    rows = []
    for setting in args.settings:
        rate, size = setting.split(":")
        cfg = CodecConfig(token_rate_hz=float(rate), codebook_size=int(size), decoder_width=args.decoder_width,
                          decoder_steps=args.decoder_steps)
        t0 = time.perf_counter()
        codec = AudioCodec.fit(fit_clips, cfg, seed=args.seed)
        fit_s = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        codes = codec.encode_batch(dev_clips)
        encode_s, encode_cpu = time.perf_counter() - t0, time.process_time() - c0
        variants = {
            "centroid": AudioCodec(dataclasses.replace(cfg, decoder="centroid"), codec.centroids_KD),
            "learned": codec,
        }
        for name, variant in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            decoded = [variant.decode(c) for c in codes]
            decode_s, decode_cpu = time.perf_counter() - t0, time.process_time() - c0
            row = {
                "token_rate_hz": cfg.token_rate_hz, "codebook_size": cfg.codebook_size, "decoder": name,
                **_score(judge, dev_texts, decoded),
                "fit_s": round(fit_s, 1), "encode_x_realtime": round(dev_seconds / encode_s, 1),
                "encode_x_realtime_per_cpu_s": round(dev_seconds / encode_cpu, 1),
                "decode_x_realtime": round(dev_seconds / decode_s, 1),
                "decode_x_realtime_per_cpu_s": round(dev_seconds / decode_cpu, 1),
                "codes_used": int(len(np.unique(np.concatenate(codes)))),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {
        "voices": list(VOICES), "seed": args.seed, "fit_clips": len(fit_clips), "fit_seconds": round(fit_seconds, 1),
        "dev_clips": len(dev_clips), "dev_seconds": round(dev_seconds, 1), "decoder_width": args.decoder_width,
        "decoder_steps": args.decoder_steps,
        "torch_threads": _torch_threads(), "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "originals": originals, "rows": rows,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def markdown(result: dict[str, object]) -> str:
    """The result as a markdown table (originals first)."""
    lines = [
        "| token rate (Hz) | codes | decoder | judge WER | judge CER | fit (s) | encode x RT (wall / per CPU-s) "
        "| decode x RT (wall / per CPU-s) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    o = result["originals"]
    lines.append(f"| original audio | | | {o['wer']:.3f} | {o['cer']:.3f} | | | |")  # type: ignore[index]
    for r in result["rows"]:  # type: ignore[union-attr]
        lines.append(
            f"| {r['token_rate_hz']:g} | {r['codebook_size']} | {r['decoder']} | {r['wer']:.3f} | {r['cer']:.3f} | "
            f"{r['fit_s']} | {r['encode_x_realtime']} / {r['encode_x_realtime_per_cpu_s']} | "
            f"{r['decode_x_realtime']} / {r['decode_x_realtime_per_cpu_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit-clips", type=int, default=500)
    p.add_argument("--dev-clips", type=int, default=48)
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="RATE:CODES pairs")
    p.add_argument("--decoder-width", type=int, default=CodecConfig.decoder_width)
    p.add_argument("--decoder-steps", type=int, default=CodecConfig.decoder_steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/audio_codec.json"))
    args = p.parse_args()
    result = run(args)
    write_json_atomic(result, args.out)
    print(markdown(result))


if __name__ == "__main__":
    main()
