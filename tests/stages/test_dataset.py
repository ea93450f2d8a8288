"""Tests for stages/dataset.py: seeded epoch order, exact resume, rows that trace back to the pack index."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import load_file

import pipeline_corpus as corpus
from stages.dataset import FIELDS, PackedLoader, PackedRows
from stages.pack import iter_row_documents


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return corpus.build(tmp_path_factory)


@pytest.fixture(scope="module")
def rows(built) -> PackedRows:
    return PackedRows(built.shards / "train")


def take(loader: PackedLoader, n: int) -> list[dict[str, torch.Tensor]]:
    out = []
    while len(out) < n:
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                break
    return out


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in FIELDS)


def test_rows_are_the_shard_rows_as_long_tensors(built, rows):
    files = sorted((built.shards / "train").glob("shard-*.safetensors"))
    arrays = [load_file(f) for f in files]
    assert len(rows) == sum(a["input_ids"].shape[0] for a in arrays) == built.pack_summary["splits"]["train"]["rows"]
    assert rows.seq_len == corpus.PACK.seq_len
    i = len(rows) - 1
    shard, row = rows.locate(i)
    item = rows[i]
    for name in FIELDS:
        assert item[name].dtype == torch.long and item[name].shape == (corpus.PACK.seq_len,)
        assert np.array_equal(item[name].numpy(), arrays[shard][name][row])
    with pytest.raises(IndexError):
        rows.locate(len(rows))


def test_a_batch_row_traces_back_to_its_documents(built, rows):
    index = pl.read_parquet(built.shards / "index.parquet")
    shard, row = rows.locate(5)
    name = rows.files[shard].relative_to(built.shards).as_posix()
    docs = list(iter_row_documents(index, name, row))
    doc_ids = rows[5]["doc_ids"]
    assert int(doc_ids.max()) + 1 == len(docs)
    assert [int((doc_ids == d).sum()) for d in range(len(docs))] == [d["length"] for d in docs]


def test_epochs_are_seeded_permutations_with_full_batches_only(rows):
    loader = PackedLoader(rows, batch_size=4, seed=9)
    per_epoch = len(rows) // 4
    assert per_epoch * 4 < len(rows), "the fixture must leave an incomplete batch to drop"
    first = take(loader, per_epoch)
    assert loader.state_dict()["epoch"] == 0  # the epoch rolls over when the next batch is asked for
    seen = torch.cat([b["input_ids"] for b in first])
    order = loader.order(0)[:per_epoch * 4]
    assert torch.equal(seen, torch.stack([rows[int(i)]["input_ids"] for i in order]))
    assert len(set(order.tolist())) == len(order)
    again = take(PackedLoader(rows, batch_size=4, seed=9), per_epoch)
    assert all(same(a, b) for a, b in zip(first, again))
    assert not np.array_equal(PackedLoader(rows, 4, seed=10).order(0), loader.order(0))
    assert not np.array_equal(loader.order(1), loader.order(0))
    assert np.array_equal(PackedLoader(rows, 4, seed=9, shuffle=False).order(3), np.arange(len(rows)))


@pytest.mark.parametrize("consumed", [3, 14, 15, 16, 31])
def test_resume_yields_exactly_the_next_batch(rows, consumed):
    reference = PackedLoader(rows, batch_size=4, seed=5)
    stream = take(reference, consumed + 3)
    interrupted = PackedLoader(rows, batch_size=4, seed=5)
    take(interrupted, consumed)
    state = interrupted.state_dict()
    resumed = PackedLoader(rows, batch_size=4, seed=5)
    resumed.load_state_dict(state)
    for expected, got in zip(stream[consumed:], take(resumed, 3)):
        assert same(expected, got)


def test_state_from_another_seed_or_split_is_refused(built, rows):
    state = PackedLoader(rows, batch_size=2, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        PackedLoader(rows, batch_size=2, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="rows"):
        PackedLoader(PackedRows(built.shards / "test"), batch_size=2, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="cannot fill"):
        PackedLoader(rows, batch_size=len(rows) + 1, seed=1)
    with pytest.raises(FileNotFoundError):
        PackedRows(built.shards / "nothing-here")
