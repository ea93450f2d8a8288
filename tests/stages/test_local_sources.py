"""Local real-data adapters on tiny fixtures made here: LibriSpeech layout and JSONL manifests."""

import json

import numpy as np
import pytest
import soundfile as sf

from stages.local_sources import LocalSourceError, read_jsonl, read_librispeech


def tone(path, sr=16000, seconds=0.5):
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sr)


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "LibriSpeech" / "dev-clean"
    chapter = root / "84" / "121123"
    chapter.mkdir(parents=True)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n")
    for utt in ("84-121123-0000", "84-121123-0001"):
        tone(chapter / f"{utt}.flac")
    return root


def test_librispeech_layout(librispeech):
    recs = list(read_librispeech(librispeech))
    assert [r.record_id for r in recs] == ["librispeech:84-121123-0000", "librispeech:84-121123-0001"]
    assert recs[0].text == "Go do you hear"
    assert recs[0].audio_path == "84/121123/84-121123-0000.flac"


def test_librispeech_missing_audio_names_file_and_line(librispeech):
    (librispeech / "84" / "121123" / "84-121123-0001.flac").unlink()
    with pytest.raises(LocalSourceError, match=r"84-121123\.trans\.txt:2: audio file .*0001\.flac not found"):
        list(read_librispeech(librispeech))


def test_librispeech_not_a_layout(tmp_path):
    with pytest.raises(LocalSourceError, match="LibriSpeech layout"):
        list(read_librispeech(tmp_path))


def write_jsonl(tmp_path, rows):
    (tmp_path / "clips").mkdir(exist_ok=True)
    tone(tmp_path / "clips" / "a.wav")
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def test_jsonl_reads_and_keeps_paths_relative(tmp_path):
    p = write_jsonl(tmp_path, [{"audio": "clips/a.wav", "text": " Hello there ", "split": "test", "id": "x1"}])
    (rec,) = read_jsonl(p)
    assert rec.record_id == "jsonl:x1" and rec.text == "Hello there" and rec.split == "test"
    assert rec.audio_path == "clips/a.wav"


@pytest.mark.parametrize("row, fragment", [
    ({"audio": "../outside.wav", "text": "hi"}, "escapes the data root"),
    ({"audio": "/etc/passwd", "text": "hi"}, "is absolute"),
    ({"audio": "clips/missing.wav", "text": "hi"}, "not found"),
    ({"audio": "clips/a.wav", "text": "   "}, "empty text"),
    ({"audio": "clips/a.wav", "text": "hi", "speaker": 3}, "unknown field"),
    ({"audio": "clips/a.wav", "text": "hi", "split": "dev"}, "split must be one of"),
    ({"audio": "clips/a.wav"}, "needs string fields"),
    ("{not json", "invalid JSON"),
])
def test_jsonl_bad_rows_name_file_and_line(tmp_path, row, fragment):
    (tmp_path.parent / "outside.wav").write_bytes(b"")
    p = write_jsonl(tmp_path, [{"audio": "clips/a.wav", "text": "fine"}, row])
    with pytest.raises(LocalSourceError) as exc:
        list(read_jsonl(p))
    assert f"{p}:2:" in str(exc.value) and fragment in str(exc.value)
