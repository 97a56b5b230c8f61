"""Sequence packing: several short texts in one row of a batch, each at its own positions and attending only to
itself, so a batch of queries runs as a few full rows instead of many padded ones.

A packed row holds its texts one after another; ``position_ids`` restart at 0 for each text, and
``packed_segment_ids`` number the texts of a row from 1 (padding is 0). A graph that takes both (the OpenVINO
provider makes one from a BERT-pattern file, ``engine.openvino_session.packed_model``) turns the segment ids into a
block-diagonal mask, so every text's token outputs are those it gets alone in a padded batch; ``unpack`` cuts
them back out into a (texts, tokens, hidden) batch with its own mask, which the embedder pools as usual.

Rows are filled first fit by decreasing length; a row holds at most ``capacity`` tokens, or one text longer than
that. Measured on a 2-core AMX Xeon, all-MiniLM-L6-v2 on OpenVINO bf16, shuffled SciFact queries, ms per call:
8 queries 8.12 -> 6.79, 32 queries 26.40 -> 17.55 at rows of 64 tokens (rows of 128: 7.74 / 20.08); 32 abstracts
lose (167 -> 183: one text per row, the pair mask costs) and are not packed (docs/benchmarks.md, "Packing short
texts"; ``scripts/packing_probe.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.tokenize import Encoded

SEGMENTS = "packed_segment_ids"
POSITIONS = "position_ids"
CAPACITY = 64  # tokens per packed row: 64 beat 128 on every short batch measured (above)
STEP = 8  # a packed batch's width is rounded up to a multiple of this (OpenVINO's width buckets)


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Text indices per row, first fit by decreasing length (ties in input order); a row holds at most
    ``max(capacity, its first text)`` tokens, so a text longer than ``capacity`` gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        size = lengths[index]
        for row, left in enumerate(room):
            if size <= left:
                rows[row].append(index)
                room[row] -= size
                break
        else:
            rows.append([index])
            room.append(max(capacity, size) - size)
    return rows


def worth_packing(lengths: Sequence[int], capacity: int) -> bool:
    """Pack a batch when it is short texts only (every one fits a row) and packing saves a row: the two shortest
    fit one row (first fit then puts the shortest beside another text, at the latest in the row of the second
    shortest)."""
    if capacity <= 0 or len(lengths) < 2 or max(lengths) > capacity:
        return False
    first, second = sorted(lengths)[:2]
    return first + second <= capacity


@dataclass(frozen=True)
class PackedBatch:
    feed: dict[str, np.ndarray]  # input_ids, attention_mask, token_type_ids, position_ids, packed_segment_ids
    rows: np.ndarray  # (texts,) the row that holds each text
    offsets: np.ndarray  # (texts,) the column its first token is at
    lengths: np.ndarray  # (texts,) its tokens

    @property
    def shape(self) -> tuple[int, int]:
        return self.feed["input_ids"].shape  # type: ignore[return-value]


def pack(items: Sequence[Encoded], capacity: int, pad_id: int = 0, step: int = STEP) -> PackedBatch:
    """The texts packed into rows (``pack_rows``), as a feed of int64 arrays at a width that is a multiple of
    ``step``, and where each text's tokens are."""
    lengths = np.array([len(item.ids) for item in items], dtype=np.int64)
    layout = pack_rows(lengths.tolist(), capacity)
    width = -(-max(int(lengths[row].sum()) for row in layout) // step) * step
    shape = (len(layout), width)
    feed = {"input_ids": np.full(shape, pad_id, np.int64), "attention_mask": np.zeros(shape, np.int64),
            "token_type_ids": np.zeros(shape, np.int64), POSITIONS: np.zeros(shape, np.int64),
            SEGMENTS: np.zeros(shape, np.int64)}
    rows = np.zeros(len(items), np.int64)
    offsets = np.zeros(len(items), np.int64)
    for number, row in enumerate(layout):
        offset = 0
        for segment, index in enumerate(row, start=1):
            size = int(lengths[index])
            span = slice(offset, offset + size)
            feed["input_ids"][number, span] = items[index].ids
            feed["token_type_ids"][number, span] = items[index].type_ids
            feed["attention_mask"][number, span] = 1
            feed[POSITIONS][number, span] = np.arange(size)
            feed[SEGMENTS][number, span] = segment
            rows[index], offsets[index] = number, offset
            offset += size
    return PackedBatch(feed, rows, offsets, lengths)


def unpack(output: np.ndarray, packed: PackedBatch) -> tuple[np.ndarray, np.ndarray]:
    """Each text's token outputs cut out of the packed rows' ``output`` (rows, width, hidden), as a right-padded
    (texts, longest, hidden) batch (zeros past a text's end) and its (texts, longest) int64 mask."""
    longest = int(packed.lengths.max())
    steps = np.arange(longest)
    mask = (steps[None, :] < packed.lengths[:, None]).astype(np.int64)
    columns = np.minimum(packed.offsets[:, None] + steps[None, :], output.shape[1] - 1)
    tokens = output[packed.rows[:, None], columns]
    return tokens * mask[..., None].astype(tokens.dtype), mask
