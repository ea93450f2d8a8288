"""Audio tokenizers: the embedded k-means log-mel codec (default) and the GLM-4-Voice adapter (`full` profile).

See `codec.py` for the embedded codec and `external.py` for the adapter; both satisfy `SpeechCodec`.
"""

from stages.audio_codec.codec import AudioCodec, CodecConfig
from stages.audio_codec.external import ExternalCodec, ExternalCodecUnavailable, SpeechCodec, load_glm4voice

__all__ = [
    "AudioCodec",
    "CodecConfig",
    "ExternalCodec",
    "ExternalCodecUnavailable",
    "SpeechCodec",
    "load_glm4voice",
]
