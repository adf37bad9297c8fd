"""Cutting a build into parts: runs of whole pieces, each hashed by its own invocation.

What is hashed is a list of *units*, each with its own `PieceHashBuilder`: the object
itself; a v1 collection's stream (its members end to end, pieces running across files); or
each non-empty member of a v2 or hybrid collection (every file starts on a piece boundary).
Their pieces are laid end to end and cut into parts of `pieces_per_part` pieces, so a part
may hold the end of one unit and the start of the next. No AWS here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_PIECES_PER_PART = 5_000
"""A part's hashes travel in one DynamoDB item (400 KB): 5,000 pieces of 52 bytes (hybrid)
and their framing stay well under it, whatever the part size asked for."""


@dataclass(frozen=True)
class Slice:
    """Bytes [start, stop) of unit `unit`: whole pieces (the unit's last one maybe short)."""

    unit: int
    start: int
    stop: int


def pieces_per_part(part_bytes: int, piece_length: int) -> int:
    """Pieces in each part: as many as fit in `part_bytes`, at least one."""
    return max(1, min(part_bytes // piece_length, MAX_PIECES_PER_PART))


def count_parts(sizes: Sequence[int], piece_length: int, part_bytes: int) -> int:
    """How many parts `plan_parts` cuts these units into."""
    pieces = sum(-(-size // piece_length) for size in sizes)
    per_part = pieces_per_part(part_bytes, piece_length)
    return -(-pieces // per_part)


def plan_parts(sizes: Sequence[int], piece_length: int, part_bytes: int) -> list[tuple[Slice, ...]]:
    """Every part's slices, in order; units of 0 bytes have no piece and appear in none."""
    per_part = pieces_per_part(part_bytes, piece_length)
    parts: list[tuple[Slice, ...]] = []
    current: list[Slice] = []
    room = per_part  # pieces the current part still takes
    for unit, size in enumerate(sizes):
        pieces = -(-size // piece_length)
        first = 0
        while first < pieces:
            take = min(room, pieces - first)
            stop = min((first + take) * piece_length, size)
            current.append(Slice(unit, first * piece_length, stop))
            first += take
            room -= take
            if not room:
                parts.append(tuple(current))
                current, room = [], per_part
    if current:
        parts.append(tuple(current))
    return parts


def part_slices(
    sizes: Sequence[int], piece_length: int, part_bytes: int, index: int
) -> tuple[Slice, ...]:
    """The slices of part `index` (IndexError past the last part)."""
    parts = plan_parts(sizes, piece_length, part_bytes)
    if not 0 <= index < len(parts):
        raise IndexError(f"part {index} of {len(parts)}")
    return parts[index]


def part_size(slices: Sequence[Slice]) -> int:
    """Bytes a part reads."""
    return sum(piece.stop - piece.start for piece in slices)
