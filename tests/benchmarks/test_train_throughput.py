"""The throughput benchmark's profile: where a training step's time goes, written as a table of operators."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.train_throughput import write_profile


def test_write_profile_names_the_operators_of_the_profiled_steps(tmp_path: Path) -> None:
    weight = torch.randn(64, 64, requires_grad=True)
    calls = []

    def step() -> None:
        calls.append(1)
        (torch.randn(8, 64) @ weight).square().sum().backward()

    write_profile(tmp_path / "nested" / "packed.txt", step, lambda: None, torch.device("cpu"))
    table = (tmp_path / "nested" / "packed.txt").read_text()
    assert len(calls) == 2
    assert "aten::mm" in table and "Self CPU" in table
