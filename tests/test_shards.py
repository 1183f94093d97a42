"""ShardReader: chunks read straight from zarr v3 shard files, checked against zarr's own reads."""

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from seaice_lib.data.shards import ShardReader
from seaice_lib.data.store import open_scene_arrays


def _array(path, values, compressors, shard=4, chunks=None, fill=0):
    arr = zarr.create_array(zarr.storage.LocalStore(path), shape=values.shape, dtype=values.dtype,
                            chunks=chunks or (1, *values.shape[1:]), shards=(shard, *values.shape[1:]),
                            compressors=compressors, fill_value=fill)
    arr[...] = values
    return zarr.open_array(zarr.storage.LocalStore(path, read_only=True), mode="r")


@pytest.mark.parametrize("compressors", [[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")], None,
                                         [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()],
                                         [Crc32cCodec()]],
                         ids=["blosc", "none", "blosc+crc32c", "crc32c"])
@pytest.mark.parametrize("dtype", [np.float16, np.uint8, bool, np.int32])
def test_every_row_equals_zarrs_own_read(tmp_path, compressors, dtype):
    """Rows across shards, a last shard only partly filled, and rows equal to the fill value (zarr
    writes no chunk for them: they read as the fill value)."""
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((10, 3, 5, 7)) * 40).astype(dtype)
    values[2] = 7  # a constant row
    values[5] = 0  # all fill value: not written
    values[9] = 0  # the last row, in the partial last shard
    arr = _array(tmp_path / "a.zarr", values, compressors)
    reader = ShardReader(arr, tmp_path / "a.zarr")
    out = np.full(values.shape[1:], 1, values.dtype)
    for k in range(len(values)):
        reader.read_into(k, out)
        assert np.array_equal(out, arr[k]) and np.array_equal(out, values[k])
    assert np.array_equal(reader.read(3), values[3])
    reader.close()


def test_a_store_scene_reads_as_through_zarr(patch_store):
    sid = zarr.open_group(zarr.storage.LocalStore(patch_store / "index", read_only=True), mode="r").attrs["scene_ids"][0]
    names = ["sar", "sar_mask", "labels", "amsr2", "era5"]
    for name, arr in open_scene_arrays(patch_store, sid, names).items():
        reader = ShardReader(arr, patch_store / "scenes" / sid / name)
        assert arr.shape[0] > 0, name  # patches to compare
        assert all(np.array_equal(reader.read(k), arr[k]) for k in range(arr.shape[0])), name


def test_a_damaged_index_and_a_truncated_shard_name_the_file(tmp_path):
    values = np.arange(8 * 6, dtype=np.float16).reshape(8, 6) + 1
    arr = _array(tmp_path / "a.zarr", values, [BloscCodec(cname="lz4")])
    shard = tmp_path / "a.zarr" / "c" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the index
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"c/0/0: damaged shard file.*CRC32C"):
        ShardReader(arr, tmp_path / "a.zarr").read(0)
    assert np.array_equal(ShardReader(arr, tmp_path / "a.zarr").read(5), values[5])  # shard 1 is whole
    shard = tmp_path / "a.zarr" / "c" / "1" / "0"
    shard.write_bytes(shard.read_bytes()[:10])
    with pytest.raises(ValueError, match=r"c/1/0: damaged shard file"):
        ShardReader(arr, tmp_path / "a.zarr").read(5)


def test_a_damaged_chunk_of_a_checksummed_array_is_named_not_read(tmp_path):
    """Without a chunk checksum a flipped bit decodes to other values; with one, zarr and the reader
    both refuse the chunk."""
    values = np.arange(8 * 64, dtype=np.float16).reshape(8, 64) + 1
    arr = _array(tmp_path / "a.zarr", values, [BloscCodec(cname="lz4"), Crc32cCodec()])
    shard = tmp_path / "a.zarr" / "c" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[20] ^= 0x01  # inside row 0's chunk
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"a.zarr: row 0 fails its CRC32C check"):
        ShardReader(arr, tmp_path / "a.zarr").read(0)
    with pytest.raises(ValueError, match="checksum"):
        arr[0]
    assert np.array_equal(ShardReader(arr, tmp_path / "a.zarr").read(1), values[1])


def test_layouts_it_does_not_read_and_bad_calls_are_refused(tmp_path):
    values = np.ones((4, 6), np.float32)
    zstd = _array(tmp_path / "z.zarr", values, [ZstdCodec()])
    with pytest.raises(ValueError, match=r"z.zarr: codecs \['bytes', 'zstd'\]"):
        ShardReader(zstd, tmp_path / "z.zarr")
    rows2 = _array(tmp_path / "r.zarr", values, None, chunks=(2, 6))
    with pytest.raises(ValueError, match="r.zarr.*chunks"):
        ShardReader(rows2, tmp_path / "r.zarr")
    reader = ShardReader(_array(tmp_path / "a.zarr", values, None), tmp_path / "a.zarr")
    with pytest.raises(IndexError, match="row 4 outside 0..3"):
        reader.read(4)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        reader.read_into(0, np.empty(6, np.float64))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        reader.read_into(0, np.empty((6, 2), np.float32)[:, 0])
