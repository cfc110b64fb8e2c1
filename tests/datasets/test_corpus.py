"""Writing the graph corpus: concurrent writers of one shard leave a valid file."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from costmodel.datasets._corpus import _save_shard

THREADS = 8


def test_concurrent_writers_of_one_corpus_shard_leave_a_valid_file(tmp_path):
    class Item:
        spec, batch, mode = {"src": "tv", "name": "resnet18"}, 1, "inference"

    xs = [np.ones((30, 4), np.float32)]
    eis = [np.zeros((2, 60), np.int64)]
    path = tmp_path / "shard.npz"
    start = threading.Barrier(THREADS)

    def writer(_):
        start.wait()
        for _ in range(10):
            _save_shard(path, xs, eis, [Item()], [])

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(writer, range(THREADS)))
    z = np.load(path, allow_pickle=False)
    assert z["x"].shape == (30, 4) and json.loads(z["meta"].tobytes().decode())["items"][0][1] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["shard.npz"]
