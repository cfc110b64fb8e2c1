"""The config a transformer row records, and the config it was built from."""

import json

from costmodel.datasets import default_root
from costmodel.measure import build_llm, run_config

TINY_DEBERTA = {"model": "tiny-deberta", "model_type": "deberta-v2", "causal": False,
                "config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "intermediate_size": 64, "vocab_size": 100, "relative_attention": True,
                           "position_buckets": 16, "pos_att_type": "p2c|c2p", "share_att_key": True}}


def test_a_row_records_list_valued_config_fields():
    # the config turns "p2c|c2p" into a list; a row that kept only scalars lost the two score terms
    _, info = build_llm(TINY_DEBERTA, "cpu")
    assert info["config"]["pos_att_type"] == ["p2c", "c2p"]
    assert info["config"]["model_type"] == "deberta-v2"
    assert all(not isinstance(v, dict) for v in info["config"].values())


def test_run_config_puts_back_what_older_rows_lack_and_keeps_their_values():
    rows = [json.loads(line) for line in (default_root() / "h200" / "llm.jsonl").read_text().splitlines()]
    deb = next(r for r in rows if r["model_type"] == "deberta-v2")
    assert "pos_att_type" not in deb["config"]  # recorded before lists were kept
    cfg = run_config(deb)
    assert cfg["pos_att_type"] == "p2c|c2p" and cfg["model_type"] == "deberta-v2"
    assert {k: cfg[k] for k in deb["config"]} == deb["config"]  # the row's own values win
    # a row whose model the registry does not name keeps its config as recorded
    other = dict(deb, model="my-encoder")
    assert run_config(other) == {**deb["config"], "model_type": "deberta-v2"}
