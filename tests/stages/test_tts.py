"""Speech synthesis backends: real engines where installed (scripts/setup.sh installs them), fakes for the rest."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from stages.audio_io import SAMPLE_RATE, encode_flac
from stages.tts import (
    BACKEND_NAMES,
    BackendUnavailable,
    TtsBackend,
    TtsError,
    UnknownVoice,
    Voice,
    get_backend,
    prepare_text,
)
from stages.tts.base import PEAK_LEVEL, ascii_fold, run_engine, stable_seed
from stages.tts.cosyvoice2 import REQUIRED_FILES, CosyVoice2Backend
from stages.tts.festival import FestivalBackend

SENTENCE = "The quick brown fox jumps over the lazy dog."
AWKWARD = (
    'She said "don\'t" -- then:\n\t$(rm -rf /) `ls` <b>caf\u00e9</b> \u2014 na\u00efve \u201cquotes\u201d; -v en-gb'
)

#: Every real engine voice the tests exercise: each backend's curated voices plus one espeak-ng variant.
REAL_VOICES = [
    ("espeak-ng", "en-us"),
    ("espeak-ng", "en-us+m3"),
    ("espeak-ng", "en-gb-x-rp"),
    ("espeak-ng", "en-gb-scotland+f3"),
    ("flite", "slt"),
    ("flite", "kal16"),
    ("flite", "awb"),
    ("flite", "rms"),
    ("festival", "kal"),
    ("festival", "ked"),
    ("piper", "joe"),
]
_BACKENDS: dict[str, TtsBackend] = {}


def _backend(name: str) -> TtsBackend:
    """One instance per backend for the whole module, so piper loads its voice once (as the stage does)."""
    if name not in _BACKENDS:
        _BACKENDS[name] = get_backend(name)
    backend = _BACKENDS[name]
    if not backend.available():
        pytest.skip(f"{name} not installed ({'; '.join(backend.problems())}); install: {backend.install_hint}")
    return backend


@pytest.mark.parametrize(("backend_name", "voice"), REAL_VOICES)
def test_real_voice_speaks_a_sentence_deterministically(backend_name: str, voice: str) -> None:
    backend = _backend(backend_name)
    pcm = backend.synthesize(SENTENCE, voice)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert np.all(np.isfinite(pcm))
    assert np.max(np.abs(pcm)) == pytest.approx(PEAK_LEVEL, rel=1e-5)
    assert np.sqrt(np.mean(pcm**2)) > 0.02  # speech, not a click in silence
    seconds = len(pcm) / SAMPLE_RATE
    assert 1.2 < seconds < 6.0, f"{backend_name}:{voice} took {seconds:.2f} s for nine words"
    again = backend.synthesize(SENTENCE, voice)
    np.testing.assert_array_equal(pcm, again)
    assert encode_flac(pcm) == encode_flac(again)


@pytest.mark.parametrize("backend_name", ["espeak-ng", "flite", "festival", "piper"])
def test_awkward_text_is_spoken_as_text(backend_name: str) -> None:
    backend = _backend(backend_name)
    voice = backend.default_voices()[0]
    pcm = backend.synthesize(AWKWARD, voice)
    seconds = len(pcm) / SAMPLE_RATE
    # ~16 words: the whole text was read (not cut at the quote/newline, not parsed as options or a command).
    assert 2.5 < seconds < 15.0, f"{backend_name} read the awkward text in {seconds:.2f} s"
    # A newline is a space: engines must not pause or split at line breaks.
    one_line = backend.synthesize("one two three", voice)
    np.testing.assert_array_equal(backend.synthesize("one\ntwo  three", voice), one_line)


@pytest.mark.parametrize("backend_name", ["espeak-ng", "flite", "festival", "piper"])
def test_unknown_voice_is_rejected_before_the_engine_falls_back(backend_name: str) -> None:
    backend = _backend(backend_name)
    with pytest.raises(UnknownVoice, match=re.escape(f"{backend_name} has no voice 'no-such-voice'")):
        backend.synthesize(SENTENCE, "no-such-voice")


def test_espeak_variants_are_checked() -> None:
    backend = _backend("espeak-ng")
    assert backend.has_voice("en-us+f3") and backend.has_voice("en-gb-scotland+klatt")
    assert not backend.has_voice("en-us+no-such-variant")
    assert not backend.has_voice("en-us+")
    assert not any(v.startswith("mb-") for v in backend.voices())


def test_flite_hides_limited_domain_voice() -> None:
    assert "awb_time" not in _backend("flite").voices()


def test_festival_voice_that_fails_to_load_is_an_error(tmp_path: Path) -> None:
    _backend("festival")  # skips when festival is missing
    (tmp_path / "english" / "ghost_diphone").mkdir(parents=True)
    backend = FestivalBackend(voices_dir=tmp_path)
    assert backend.voices() == ("ghost",)
    with pytest.raises(TtsError, match=r"festival voice 'ghost' failed on text 'Hello there\.'"):
        backend.synthesize("Hello there.", "ghost")


def test_piper_reports_missing_model_files(tmp_path: Path) -> None:
    backend = get_backend("piper", models={"ghost": tmp_path / "ghost.onnx"})
    problems = "; ".join(backend.problems())
    assert str(tmp_path / "ghost.onnx") in problems and str(tmp_path / "ghost.onnx.json") in problems
    with pytest.raises(BackendUnavailable, match="pip install piper-tts"):
        backend.require()


class _FakeBackend(TtsBackend):
    """Returns a fixed PCM at a fixed rate, or raises, so the template method's checks can be exercised."""

    name = "fake"
    install_hint = "nothing"

    def __init__(self, pcm: np.ndarray | Exception, sr: int = 24000) -> None:
        self.pcm, self.sr = pcm, sr

    def problems(self) -> tuple[str, ...]:
        return ()

    def voices(self) -> tuple[str, ...]:
        return ("v",)

    def default_voices(self) -> tuple[str, ...]:
        return ("v",)

    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        if isinstance(self.pcm, Exception):
            raise self.pcm
        return self.pcm, self.sr


def test_output_is_resampled_and_peak_normalised() -> None:
    pcm = _FakeBackend((0.1 * np.sin(np.arange(24000) / 10.0)).astype(np.float32)).synthesize("hi", "v")
    assert abs(len(pcm) - SAMPLE_RATE) <= 1 and pcm.dtype == np.float32
    assert np.max(np.abs(pcm)) == pytest.approx(PEAK_LEVEL, rel=1e-5)


@pytest.mark.parametrize(
    ("pcm", "reason"),
    [
        (np.zeros(1000, dtype=np.float32), "silence"),
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),
        (np.zeros(0, dtype=np.float32), "no audio"),
        (RuntimeError("engine exploded"), "engine exploded"),
    ],
)
def test_bad_engine_output_raises_error_naming_backend_voice_and_text(pcm: np.ndarray | Exception, reason: str) -> None:
    with pytest.raises(TtsError, match=rf"fake voice 'v' failed on text 'Say \"this\"\.'.*{reason}"):
        _FakeBackend(pcm).synthesize('Say "this".', "v")


def test_empty_text_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to synthesize"):
        _FakeBackend(np.ones(10, dtype=np.float32)).synthesize(" \n\t ", "v")


def test_prepare_text_and_ascii_fold() -> None:
    assert prepare_text("  a\n\nb\tc\x00d ") == "a b cd"
    assert ascii_fold("caf\u00e9 \u2014 \u201cna\u00efve\u201d it\u2019s") == "cafe ,  \"naive\" it's"


def test_run_engine_passes_bytes_verbatim_and_reports_failures() -> None:
    payload = '$(rm -rf /) "q" `x`\n-v'.encode()
    assert run_engine(["cat"], stdin=payload, timeout_s=10) == payload
    with pytest.raises(RuntimeError, match="exited with status 3: oops"):
        run_engine(["sh", "-c", "echo oops >&2; exit 3"], timeout_s=10)
    with pytest.raises(RuntimeError, match="timed out after 0.2 s"):
        run_engine(["sleep", "5"], timeout_s=0.2)
    with pytest.raises(RuntimeError, match="could not start"):
        run_engine(["/nonexistent/engine"], timeout_s=1)


def test_voice_ids_and_registry() -> None:
    voice = Voice.parse("espeak-ng:en-gb-scotland+f3")
    assert (voice.backend, voice.name, str(voice)) == ("espeak-ng", "en-gb-scotland+f3", "espeak-ng:en-gb-scotland+f3")
    for bad in ("slt", ":slt", "flite:"):
        with pytest.raises(ValueError, match="<backend>:<voice>"):
            Voice.parse(bad)
    assert set(BACKEND_NAMES) == {"espeak-ng", "flite", "festival", "piper", "cosyvoice2"}
    with pytest.raises(ValueError, match="unknown TTS backend 'sam'"):
        get_backend("sam")


def test_stable_seed_depends_on_every_part_and_their_boundaries() -> None:
    assert stable_seed("a", "b") == stable_seed("a", "b")
    assert len({stable_seed("a", "b"), stable_seed("ab"), stable_seed("a", "c"), stable_seed("b", "a")}) == 4


# --- CosyVoice2: no weights here, so the layout checks run on fake directories and synthesis on a fake engine.


def _model_dir(root: Path, skip: tuple[str, ...] = ()) -> Path:
    for rel in REQUIRED_FILES:
        if rel not in skip:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x")
    return root


class _FakeCosyVoice:
    sample_rate = 24000

    def __init__(self) -> None:
        self.speakers: dict[str, tuple[str, Path]] = {}
        self.calls: list[tuple[str, str, int]] = []

    def add_speaker(self, name: str, prompt_text: str, prompt_wav: Path) -> None:
        self.speakers[name] = (prompt_text, prompt_wav)

    def synthesize(self, text: str, speaker: str, seed: int) -> np.ndarray:
        self.calls.append((text, speaker, seed))
        return np.random.default_rng(seed).uniform(-0.5, 0.5, 24000).astype(np.float32)


@pytest.mark.parametrize("model_dir", [None, ""])
def test_cosyvoice2_without_model_dir_names_the_problem(model_dir: str | None) -> None:
    with pytest.raises(BackendUnavailable, match="no model_dir given.*CosyVoice2-0.5B model directory"):
        CosyVoice2Backend(model_dir).require()


def test_cosyvoice2_names_exactly_the_missing_files(tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path, skip=("flow.pt", "CosyVoice-BlankEN/config.json"))
    backend = CosyVoice2Backend(model_dir, engine_factory=lambda _: _FakeCosyVoice())
    assert backend.missing_files() == ("flow.pt", "CosyVoice-BlankEN/config.json")
    with pytest.raises(BackendUnavailable) as err:
        backend.require()
    message = str(err.value)
    assert "lacks flow.pt, CosyVoice-BlankEN/config.json" in message and "llm.pt" not in message
    assert "no speaker prompts" in message


def test_cosyvoice2_synthesizes_through_the_engine_deterministically(tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path / "model")
    prompts = model_dir / "prompts"
    prompts.mkdir()
    for name in ("alice", "bob", "orphan"):
        (prompts / f"{name}.wav").write_bytes(b"RIFF")
    (prompts / "alice.txt").write_text("Prompt words of Alice.\n")
    (prompts / "bob.txt").write_text("Bob speaking.")
    engines: list[_FakeCosyVoice] = []

    def factory(path: Path) -> _FakeCosyVoice:
        assert path == model_dir
        engines.append(_FakeCosyVoice())
        return engines[-1]

    backend = get_backend("cosyvoice2", model_dir=model_dir, engine_factory=factory)
    assert backend.problems() == () and backend.voices() == ("alice", "bob")  # orphan has no transcript
    first = backend.synthesize(SENTENCE, "alice")
    assert abs(len(first) - SAMPLE_RATE) <= 1  # 24 kHz engine output resampled
    np.testing.assert_array_equal(first, backend.synthesize(SENTENCE, "alice"))
    assert not np.array_equal(first, backend.synthesize(SENTENCE, "bob"))
    assert len(engines) == 1  # loaded once, kept warm
    assert engines[0].speakers == {
        "alice": ("Prompt words of Alice.", prompts / "alice.wav"),
        "bob": ("Bob speaking.", prompts / "bob.wav"),
    }
    seeds = {seed for _, _, seed in engines[0].calls}
    assert len(seeds) == 2  # one seed per (voice, text): repeated calls reuse it
    with pytest.raises(UnknownVoice):
        backend.synthesize(SENTENCE, "orphan")


def test_cosyvoice2_needs_upstream_package_without_injected_engine(tmp_path: Path) -> None:
    backend = CosyVoice2Backend(_model_dir(tmp_path))
    assert any("cosyvoice" in p for p in backend.problems())


@pytest.mark.slow
def test_default_voices_are_intelligible_to_an_asr_judge() -> None:
    """whisper tiny.en (the project's offline judge) transcribes every curated voice nearly verbatim."""
    from stages.asr_judge import AsrJudge, JudgeUnavailableError, wer

    try:
        judge = AsrJudge()
    except JudgeUnavailableError as exc:
        pytest.skip(str(exc))
    text = "Please bring the green bottle to the kitchen table."
    for name in ("espeak-ng", "flite", "festival", "piper"):
        backend = get_backend(name)
        if not backend.available():
            continue
        for voice in backend.default_voices():
            heard = judge.transcribe(backend.synthesize(text, voice))
            assert wer([text], [heard]) <= 0.3, f"{name}:{voice} heard as {heard!r}"
