"""Canonical Huffman coding of small-integer symbol streams (Deep Compression, stage 3).

Pure and self-contained: `code_lengths` builds optimal code lengths from symbol counts,
`encode` turns a symbol array into bytes, `decode` turns them back exactly. Codes are
canonical (assigned in order of (length, symbol)), so a decoder needs only the code length
of each symbol of the alphabet, never the code tree: that is all `rewind compress` stores.
Bits are packed most significant first; the last byte is zero-padded, so the decoder is
told how many symbols to read.
"""

from __future__ import annotations

import heapq

import numpy as np

from rewind.errors import RewindError

MAX_LENGTH = 63   # codes live in uint64; a deeper tree needs > 10^13 symbols (Fibonacci counts)
TABLE_BITS = 12   # decoder lookup table: codes up to this long are decoded in one step


def code_lengths(counts) -> np.ndarray:
    """Huffman code length of every symbol 0..len(counts)-1 (0 for symbols that never occur).

    A single used symbol gets length 1 (a code needs at least one bit per symbol).
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = np.flatnonzero(counts > 0)
    if len(used) == 1:
        lengths[used] = 1
    if len(used) <= 1:
        return lengths
    # heap of (count, tiebreak, symbols under this node); merging two nodes deepens all their symbols
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(used)]
    heapq.heapify(heap)
    tiebreak = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        lengths[s1] += 1
        lengths[s2] += 1
        heapq.heappush(heap, (c1 + c2, tiebreak, s1 + s2))
        tiebreak += 1
    if lengths.max() > MAX_LENGTH:
        raise RewindError(f"Huffman code longer than {MAX_LENGTH} bits; too many symbols for this coder")
    return lengths


def canonical_codes(lengths) -> np.ndarray:
    """Canonical code of every symbol (as an integer read over `lengths[s]` bits)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.uint64)
    code, prev_len = 0, 0
    for s in sorted(np.flatnonzero(lengths > 0), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev_len
        prev_len = int(lengths[s])
        codes[s] = code
        code += 1
    return codes


def _check_lengths(lengths: np.ndarray) -> None:
    """Valid canonical lengths satisfy Kraft's inequality; anything else is a corrupt table."""
    if len(lengths) and (lengths.min() < 0 or lengths.max() > MAX_LENGTH):
        raise RewindError("corrupt Huffman table (code length out of range)")
    used = lengths[lengths > 0]
    if len(used) and sum(2.0 ** -int(n) for n in used) > 1.0 + 1e-12:
        raise RewindError("corrupt Huffman table (code lengths violate Kraft's inequality)")


def encode(symbols, lengths) -> bytes:
    """Concatenated canonical codes of `symbols`, packed MSB first into bytes."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(symbols):
        return b""
    if symbols.min() < 0 or symbols.max() >= len(lengths) or np.any(lengths[symbols] == 0):
        raise ValueError("symbol without a code")
    codes = canonical_codes(lengths)[symbols]
    n = lengths[symbols]
    width = int(n.max())
    shifts = (n[:, None] - 1 - np.arange(width)[None, :])          # bit j of a code: (code >> (n-1-j)) & 1
    bits = (codes[:, None] >> np.maximum(shifts, 0).astype(np.uint64)) & np.uint64(1)
    bits = bits.astype(np.uint8)[shifts >= 0]                        # row-major: codes in order, MSB first
    return np.packbits(bits).tobytes()


def decode(data: bytes, lengths, count: int) -> np.ndarray:
    """Read `count` symbols back from `encode`'s bytes. Corrupt input -> RewindError."""
    lengths = np.asarray(lengths, dtype=np.int64)
    _check_lengths(lengths)
    out = np.zeros(count, dtype=np.int64)
    if count == 0:
        return out
    used = np.flatnonzero(lengths > 0)
    if not len(used):
        raise RewindError("corrupt Huffman stream (symbols but an empty code table)")
    codes = canonical_codes(lengths)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.int64)
    nbits = len(bits)
    k = min(TABLE_BITS, int(lengths.max()))
    # table[v] = (symbol, length) for every k-bit window v that starts with a code of length <= k
    table_sym = np.full(1 << k, -1, dtype=np.int64)
    table_len = np.zeros(1 << k, dtype=np.int64)
    for s in used:
        n = int(lengths[s])
        if n <= k:
            lo = int(codes[s]) << (k - n)
            table_sym[lo:lo + (1 << (k - n))] = s
            table_len[lo:lo + (1 << (k - n))] = n
    padded = np.concatenate([bits, np.zeros(k, dtype=np.int64)])
    window = np.zeros(nbits, dtype=np.int64)                        # the k bits starting at every position
    for j in range(k):
        window = (window << 1) | padded[j:j + nbits]
    # slow path for longer codes: canonical first code and symbol offset per length
    by_len = sorted(used, key=lambda s: (lengths[s], s))
    first, offset, n_of = {}, {}, {}
    for i, s in enumerate(by_len):
        n = int(lengths[s])
        if n not in first:
            first[n], offset[n], n_of[n] = int(codes[s]), i, 0
        n_of[n] += 1
    table_sym_l, table_len_l, window_l, bits_l = table_sym.tolist(), table_len.tolist(), window.tolist(), bits.tolist()
    pos = 0
    for i in range(count):
        if pos >= nbits:
            raise RewindError("corrupt Huffman stream (ends early)")
        v = window_l[pos]
        n = table_len_l[v]
        if n:
            out[i] = table_sym_l[v]
            pos += n
            continue
        code, n = 0, 0
        while True:
            if pos + n >= nbits or n >= MAX_LENGTH:
                raise RewindError("corrupt Huffman stream (ends early or invalid code)")
            code = (code << 1) | bits_l[pos + n]
            n += 1
            if n in first and 0 <= code - first[n] < n_of[n]:
                out[i] = by_len[offset[n] + code - first[n]]
                pos += n
                break
    if pos > nbits:
        raise RewindError("corrupt Huffman stream (ends early)")
    return out


def encoded_bits(counts, lengths) -> int:
    """Length in bits of the stream `encode` would write for these symbol counts."""
    return int(np.dot(np.asarray(counts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)))
