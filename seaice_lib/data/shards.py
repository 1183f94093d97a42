"""Chunks of a sharded zarr v3 array read straight from its shard files into the caller's buffers.

zarr's own read of one chunk costs about 2 ms on our machines whatever its size (its async event
loop, the shard index read again on every call, a fresh buffer per chunk); a training batch reads
about 40 chunks. :class:`ShardReader` keeps each shard's index (checked against its CRC32C once)
and its open file, and decompresses a chunk with one ``pread`` and one Blosc call into the row of
a batch buffer. It reads the layouts :mod:`.patches` writes (sharding_indexed; inner codecs
``bytes``, optionally ``blosc``, optionally ``crc32c``, which it checks on every chunk; index
``bytes`` + ``crc32c`` at the end of the shard, one chunk per row); anything else raises
ValueError, so callers read such arrays through zarr.
Format facts: the zarr v3 sharding specification (docs/data.md, "Reading patches fast").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import ShardingCodec
from zarr.core.metadata import ArrayV3Metadata

_EMPTY = 2**64 - 1  # offset and length of a chunk that was never written (all fill value)


class ShardReader:
    """Row ``k`` (one chunk) of a sharded array, decompressed into a buffer the caller owns.

    Args:
        array: an array opened from a ``LocalStore``; chunks must span whole rows (chunk shape
            ``(1, *shape[1:])``).
        folder: the array's folder on disk (its ``zarr.json`` and ``c/`` tree).
    """

    def __init__(self, array: zarr.Array, folder: str | Path):
        self._shards: dict[int, tuple[int, np.ndarray]] = {}  # shard -> (file descriptor, (rows, 2) index)
        self.folder = Path(folder)
        self.shape, self.dtype = array.shape, np.dtype(array.dtype)
        if not array.shards:
            raise ValueError(f"{self.folder}: not a sharded array")
        metadata = cast(ArrayV3Metadata, array.metadata)  # a sharded array is zarr v3
        sharding = cast(ShardingCodec, metadata.codecs[0])
        inner = [c.to_dict()["name"] for c in sharding.codecs]
        index = [c.to_dict()["name"] for c in sharding.index_codecs]
        if (inner not in (["bytes"], ["bytes", "blosc"], ["bytes", "crc32c"], ["bytes", "blosc", "crc32c"])
                or index != ["bytes", "crc32c"]
                or sharding.index_location.value != "end" or tuple(sharding.chunk_shape) != (1, *self.shape[1:])
                or self.dtype.byteorder == ">"):
            raise ValueError(f"{self.folder}: codecs {inner}, index {index} at the "
                             f"{sharding.index_location.value}, chunks {sharding.chunk_shape}: not a layout "
                             "ShardReader reads (one row per chunk, bytes[+blosc][+crc32c], crc32c index at the end)")
        self.compressed, self.checked = "blosc" in inner, inner[-1] == "crc32c"
        self.rows_per_shard = array.shards[0]
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.fill = np.asarray(array.metadata.fill_value, self.dtype)
        self._encode = metadata.chunk_key_encoding.encode_chunk_key

    def _shard(self, s: int) -> tuple[int, np.ndarray]:
        if s not in self._shards:
            path = self.folder / self._encode((s,) + (0,) * (len(self.shape) - 1))
            fd = os.open(path, os.O_RDONLY)
            size = os.fstat(fd).st_size
            n_bytes = 16 * self.rows_per_shard + 4
            tail = os.pread(fd, n_bytes, size - n_bytes) if size >= n_bytes else b""
            if len(tail) != n_bytes or google_crc32c.value(tail[:-4]) != int.from_bytes(tail[-4:], "little"):
                os.close(fd)
                raise ValueError(f"{path}: damaged shard file, its chunk index fails its CRC32C check")
            self._shards[s] = fd, np.frombuffer(tail[:-4], "<u8").reshape(-1, 2)
        return self._shards[s]

    def read_into(self, k: int, out: np.ndarray) -> None:
        """Decompress row ``k`` into ``out``, a C-contiguous array of ``shape[1:]`` and the dtype."""
        if not 0 <= k < self.shape[0]:
            raise IndexError(f"{self.folder}: row {k} outside 0..{self.shape[0] - 1}")
        if out.dtype != self.dtype or out.nbytes != self.row_bytes or not out.flags.c_contiguous:
            raise ValueError(f"{self.folder}: out must be C-contiguous {self.dtype} of {self.shape[1:]}")
        fd, index = self._shard(k // self.rows_per_shard)
        offset, length = (int(v) for v in index[k % self.rows_per_shard])
        if offset == _EMPTY:
            out[...] = self.fill
            return
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise ValueError(f"{self.folder}: shard of row {k} ends early (truncated file)")
        if self.checked:
            data, stored = data[:-4], data[-4:]
            if google_crc32c.value(data) != int.from_bytes(stored, "little"):
                raise ValueError(f"{self.folder}: row {k} fails its CRC32C check (a damaged shard file)")
        if self.compressed:
            blosc.decompress(data, out)
        elif len(data) != self.row_bytes:
            raise ValueError(f"{self.folder}: row {k} holds {len(data)} bytes, not {self.row_bytes}")
        else:
            out.reshape(-1).view(np.uint8)[...] = np.frombuffer(data, np.uint8)

    def read(self, k: int) -> np.ndarray:
        """Row ``k`` as a new array."""
        out = np.empty(self.shape[1:], self.dtype)
        self.read_into(k, out)
        return out

    def close(self) -> None:
        for fd, _ in self._shards.values():
            os.close(fd)
        self._shards.clear()

    def __del__(self):
        self.close()
