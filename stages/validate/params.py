"""`validate` section of params.yaml: the thresholds the data contracts are evaluated with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValidateParams:
    """`validate` section of params.yaml.

    The numeric fields are handed to the great-expectations suites in `data_contracts/` as suite parameters
    (`{"$PARAMETER": "<field>"}`), so the contracts stay data files and the thresholds stay params.
    """

    max_quarantine_fraction: float = 0.02
    """The stage fails when more than this fraction of any manifest's rows is quarantined (0 = no bad row allowed)."""
    sample_rate: int = 16000
    """Every clip must decode at this rate (Hz): the pipeline's one sample rate."""
    min_duration_s: float = 0.2
    """Shorter clips are quarantined (a TTS engine that emitted a click instead of speech)."""
    max_duration_s: float = 30.0
    """Longer clips are quarantined (runaway synthesis; packing budgets assume short clips)."""
    silence_rms: float = 1e-3
    """A clip whose RMS is below this (about -60 dBFS) is silent."""
    max_clipped_fraction: float = 1e-3
    """A clip with more than this fraction of samples at full scale (|x| >= 0.999) is clipped."""
    max_text_chars: int = 1000
    """Longer texts are quarantined (a paragraph where a sentence belongs; it would not fit a packed row)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_quarantine_fraction <= 1.0:
            raise ValueError(f"max_quarantine_fraction must be in [0, 1], got {self.max_quarantine_fraction}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 0.0 <= self.min_duration_s < self.max_duration_s:
            raise ValueError(f"need 0 <= min_duration_s < max_duration_s, got {self.min_duration_s}, "
                             f"{self.max_duration_s}")
        if not 0.0 <= self.silence_rms < 1.0:
            raise ValueError(f"silence_rms must be in [0, 1), got {self.silence_rms}")
        if not 0.0 <= self.max_clipped_fraction <= 1.0:
            raise ValueError(f"max_clipped_fraction must be in [0, 1], got {self.max_clipped_fraction}")
        if self.max_text_chars <= 0:
            raise ValueError(f"max_text_chars must be positive, got {self.max_text_chars}")

    def suite_parameters(self) -> dict[str, float | int]:
        """The values the contracts' `$PARAMETER` references resolve to."""
        return {"sample_rate": self.sample_rate, "min_duration_s": self.min_duration_s,
                "max_duration_s": self.max_duration_s, "silence_rms": self.silence_rms,
                "max_clipped_fraction": self.max_clipped_fraction, "max_text_chars": self.max_text_chars}
