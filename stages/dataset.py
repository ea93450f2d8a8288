"""Packed rows for training: a map-style Dataset over one split's shards and a resumable, seeded batch loader.

    rows = PackedRows("data/shards/train")
    loader = PackedLoader(rows, batch_size=8, seed=1234)
    for batch in loader:             # the rest of the current epoch, then `loader.epoch` moves on
        batch["input_ids"]           # LongTensor [8, seq_len]; also "doc_ids" and "role"
    state = loader.state_dict()      # {"epoch", "index", "seed", "batch_size", "rows"}: save it with a checkpoint
    loader.load_state_dict(state)    # a resumed run yields exactly the batch that would have come next

Epoch `e` visits the rows in the order of a permutation seeded by (seed, e), so the order is a pure function of
the seed and the position, never of how many processes or restarts it took to get there. `index` counts rows
consumed in the current epoch; the last incomplete batch of an epoch is dropped, so every batch has the same
shape (FlexAttention caches one BlockMask per shape). Rows are read lazily from the safetensors files (memory
maps), so a split larger than RAM loads fine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch.utils.data import Dataset

FIELDS = ("input_ids", "doc_ids", "role")


class PackedRows(Dataset):
    """Row `i` of a split (shards in file-name order) as a dict of LongTensors `[seq_len]`."""

    def __init__(self, split_dir: str | Path) -> None:
        self.files = sorted(Path(split_dir).glob("shard-*.safetensors"))
        if not self.files:
            raise FileNotFoundError(f"{split_dir}: no shard-*.safetensors files (run the pack stage)")
        self._handles = [safe_open(str(f), framework="pt") for f in self.files]
        counts = []
        for f, h in zip(self.files, self._handles):
            shapes = {name: tuple(h.get_slice(name).get_shape()) for name in FIELDS}
            if len(set(shapes.values())) != 1 or len(shapes["input_ids"]) != 2:
                raise ValueError(f"{f}: expected equal [rows, seq_len] tensors {FIELDS}, got {shapes}")
            counts.append(shapes["input_ids"][0])
        seq_lens = {tuple(h.get_slice("input_ids").get_shape())[1] for h in self._handles}
        if len(seq_lens) != 1:
            raise ValueError(f"{split_dir}: shards disagree on seq_len: {sorted(seq_lens)}")
        self.seq_len = seq_lens.pop()
        self._ends = np.cumsum(counts)

    def __len__(self) -> int:
        return int(self._ends[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """(shard number, row within that shard) of global row `i`; `files[shard]` names the pack index's `shard`."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} outside [0, {len(self)})")
        s = int(np.searchsorted(self._ends, i, side="right"))
        return s, i - (int(self._ends[s - 1]) if s else 0)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        shard, row = self.locate(i)
        handle = self._handles[shard]
        return {name: handle.get_slice(name)[row:row + 1][0].long() for name in FIELDS}


class PackedLoader:
    """Seeded epoch-wise shuffled batches of `PackedRows`, with a position that saves and restores exactly."""

    def __init__(self, rows: PackedRows, batch_size: int, seed: int, shuffle: bool = True) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if len(rows) < batch_size:
            raise ValueError(f"{len(rows)} rows cannot fill one batch of {batch_size} (incomplete batches are dropped)")
        self.rows, self.batch_size, self.seed, self.shuffle = rows, batch_size, seed, shuffle
        self.epoch = 0
        self.index = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.rows) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The row order of `epoch` (identity when not shuffling)."""
        if not self.shuffle:
            return np.arange(len(self.rows))
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(len(self.rows))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The remaining batches of the current epoch; the position advances as each batch is handed out."""
        order = self.order(self.epoch)
        while self.index + self.batch_size <= self.batches_per_epoch * self.batch_size:
            picked = order[self.index:self.index + self.batch_size]
            self.index += self.batch_size
            items = [self.rows[int(i)] for i in picked]
            yield {name: torch.stack([item[name] for item in items]) for name in FIELDS}
        self.epoch, self.index = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "batch_size": self.batch_size,
                "rows": len(self.rows)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a position; the seed and row count must match, or the next batch would not be the same one."""
        for key, mine in (("seed", self.seed), ("rows", len(self.rows))):
            if int(state[key]) != mine:
                raise ValueError(f"loader state has {key}={state[key]}, this loader has {mine}")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
