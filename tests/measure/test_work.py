"""Work files, work items and row keys (costmodel.measure.work)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import costmodel
from costmodel._errors import InvalidInputError
from costmodel.datasets import default_root
from costmodel.measure import load_work, parse_work, row_key


SPECS_DIR = Path(costmodel.__file__).resolve().parent / "data" / "specs"
SPEC = {"family": "misc", "name": "squeezenet1_1", "res": 64, "src": "tv"}
TINY_GPT2 = {"model": "tiny-gpt2", "model_type": "gpt2", "causal": True,
             "config": {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256, "n_positions": 128,
                        "bos_token_id": 0, "eos_token_id": 0}}
TINY_BERT = {"model": "tiny-bert", "model_type": "bert", "causal": False,
             "config": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                        "intermediate_size": 64, "vocab_size": 256, "max_position_embeddings": 128}}




def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]



# --------------------------------------------------------------- work files
def test_parse_work_file_formats(tmp_path):
    items = parse_work({
        "grid": [{"mode": "infer", "dtype": "fp32", "batch": [1, 8]}, {"mode": "train", "dtype": "fp32", "batch": 4}],
        "vision": [{"spec": SPEC},
                   {"spec": dict(SPEC, res=32), "batch": [2], "mode": "infer", "dtype": ["fp32", "fp16"]},
                   {"spec": dict(SPEC, res=48), "grid": [{"mode": "train", "batch": 2}]}],
        "llm": [{"model": "gpt2", "mode": ["prefill", "decode"], "dtype": "fp16", "batch": [1, 8], "seq": 512},
                dict(TINY_BERT, batch=2, seq=[16, 32])],
    })
    v = [i for i in items if i.kind == "vision"]
    assert [(i.spec["res"], i.mode, i.dtype, i.batch) for i in v] == [
        (64, "infer", "fp32", 1), (64, "infer", "fp32", 8), (64, "train", "fp32", 4),
        (32, "infer", "fp32", 2), (32, "infer", "fp16", 2), (48, "train", "fp32", 2)]
    llm = [i for i in items if i.kind == "llm"]
    assert len(llm) == 4 + 2
    assert llm[0].spec["model_type"] == "gpt2" and llm[0].spec["causal"] and llm[0].spec["config"]["n_layer"] == 12
    assert {i.mode for i in llm[4:]} == {"forward"} and [i.seq for i in llm[4:]] == [16, 32]
    # the old format: a JSON list or JSONL of specs with --batch
    (tmp_path / "l.json").write_text(json.dumps([SPEC, dict(SPEC, res=32)]))
    (tmp_path / "l.jsonl").write_text(json.dumps(SPEC) + "\n" + json.dumps(dict(SPEC, res=32)) + "\n")
    for f in ("l.json", "l.jsonl"):
        w = load_work(tmp_path / f, batches=[1, 2])
        assert [(i.spec["res"], i.batch, i.mode, i.dtype) for i in w] == [
            (64, 1, "infer", "fp32"), (64, 2, "infer", "fp32"), (32, 1, "infer", "fp32"), (32, 2, "infer", "fp32")]
    assert len(load_work(tmp_path / "l.json")) == 2  # batch 1 by default


@pytest.mark.parametrize("data, msg", [
    ({"vision": [{"spec": SPEC, "batch": 1, "mode": "inference"}]}, "unknown mode 'inference'; valid: infer, train"),
    ({"vision": [{"spec": SPEC, "batch": 1, "dtype": "fp8"}]}, "unknown dtype 'fp8'; valid: fp32, fp16, bf16"),
    ({"vision": [{"spec": SPEC, "batch": [1, 0]}]}, "expected batch sizes to be positive integers, got 0"),
    ({"vision": [{"spec": SPEC, "batches": [1]}]}, "unknown keys ['batches']"),
    ({"vision": [{"spec": SPEC}]}, "no batch sizes"),
    ({"vision": [{"spec": dict(SPEC, src="keras")}]}, "spec 'src' must be one of tv, tv_resnet, tv_vit, timm"),
    ({"vison": []}, "unknown keys ['vison']"),
    ({"vision": []}, "nothing to measure"),
    ({"llm": [dict(TINY_BERT, batch=1, seq=8, mode="decode")]}, "mode 'decode' is not valid for an encoder"),
    ({"llm": [dict(TINY_GPT2, batch=1, seq=124, mode="decode")]}, "exceeds the model's 128 positions"),
    ({"llm": [dict(TINY_GPT2, batch=1)]}, "'seq' is missing"),
    ({"llm": [{"model": "no-such-llm", "batch": 1, "seq": 8}]}, "no-such-llm"),
    ("resnet50", "expected a JSON object"),
    ([], "nothing to measure: the list of specs is empty"),
    ({"vision": [{"spec": dict(SPEC, speed=2), "batch": 1}]}, "unknown spec keys ['speed']"),
    ({"vision": {"spec": SPEC, "batch": 1}}, "'vision' must be a list of entries"),
    ({"llm": dict(TINY_GPT2, batch=1, seq=8)}, "'llm' must be a list of entries"),
])
def test_work_validation_errors(data, msg):
    with pytest.raises(InvalidInputError) as e:
        parse_work(data)
    assert msg in str(e.value)


@pytest.mark.parametrize("text, place", [
    # a pretty-printed work file with a trailing comma on its fifth line
    ('{\n "vision": [\n  {"spec": %s, "batch": 1},\n  {"spec": %s, "batch": 2},\n ]\n}\n', "line 5 column 2"),
    # JSONL of specs whose third line is cut
    ('%s\n%s\n{"name": "resnet18", "src": "tv",\n', "line 3 column 34"),
    ('%s\r\n\r\n%s\r\n{"name": "resnet18", "src": "tv",\r\n', "line 4 column 34"),
])
def test_a_work_file_that_is_not_json_names_the_line_at_fault(tmp_path, text, place):
    f = tmp_path / "work.json"
    f.write_text(text % (json.dumps(SPEC), json.dumps(SPEC)), newline="")
    with pytest.raises(InvalidInputError, match="neither a JSON work file") as e:
        load_work(f)
    assert place in str(e.value)


def test_batch_flag_only_for_plain_lists():
    with pytest.raises(InvalidInputError, match="--batch applies to a plain list"):
        parse_work({"vision": [{"spec": SPEC, "batch": 1}]}, batches=[2])


def test_shipped_cpu_spec_list_reproduces_the_cpu_data():
    items = load_work(SPECS_DIR / "cpu_vision.json")
    rows = _rows(default_root() / "cpu" / "vision.jsonl")
    assert len(items) == 112
    assert {i.key() for i in items} == {row_key(r["spec"], r["batch"], r["mode"], r["dtype"]) for r in rows}


def test_shipped_gpu_extension():
    items = load_work(SPECS_DIR / "h200_extend.json")
    assert 60 <= len(items) <= 95
    vision = [i for i in items if i.kind == "vision"]
    packaged = _rows(default_root() / "h200" / "vision.jsonl")
    names = {r["spec"]["name"] for r in packaged}
    families = {r["spec"]["family"] for r in packaged}
    check = [i for i in vision if i.spec["name"] in names]
    new = [i for i in vision if i.spec["name"] not in names]
    # a few leading rows repeat packaged ones (a harness check); then only new architectures
    assert len(check) <= 6 and vision[: len(check)] == check
    new_specs = {json.dumps(i.spec, sort_keys=True) for i in new}
    assert len(new_specs) >= 10
    assert all(json.loads(s).get("family") for s in new_specs)
    assert len({json.loads(s)["family"] for s in new_specs} - families) >= 8
    for s in new_specs:  # the packaged grid for every new architecture
        grid = {(i.mode, i.dtype, i.batch) for i in new if json.dumps(i.spec, sort_keys=True) == s}
        assert grid == {("infer", "fp32", 1), ("infer", "fp32", 8), ("infer", "fp32", 32), ("infer", "fp32", 128),
                        ("train", "fp32", 32), ("infer", "fp16", 32)}
    assert all(i.kind == "llm" for i in items[len(vision):])  # transformer rows last


def test_gpu_extension_models_build():
    """Every spec of the GPU extension builds (on the meta device: no weights)."""
    from costmodel.frontends.zoo import build_zoo_model

    seen = set()
    for i in load_work(SPECS_DIR / "h200_extend.json"):
        key = i.group()
        if i.kind == "vision" and key not in seen:
            seen.add(key)
            zm = build_zoo_model(i.spec)
            assert zm.input_shape == (3, i.spec["res"], i.spec["res"])




def test_shipped_transformer_steps_spec():
    """The GPU spec of transformer fine-tuning steps and new architectures: what it measures, and that every
    model builds as it is costed (on the meta device: no weights)."""
    from costmodel.frontends.hf import build_hf_model

    items = load_work(SPECS_DIR / "h200_llm_steps.json")
    assert all(i.kind == "llm" for i in items) and len(items) == 19
    # an encoder-decoder with a target of its own length
    assert [(i.mode, i.seq, i.target_seq) for i in items if i.target_seq] == [("forward", 512, 64), ("training", 512, 64)]
    assert {i.spec["model"] for i in items if i.mode == "training"} == {"gpt2", "qwen2-0.5b", "tinyllama-1.1b",
                                                                         "t5-small"}
    assert {i.mode for i in items if i.spec["model"] == "t5-small"} == {"forward", "decode", "training"}
    # last, the two packaged decode rows the memory replay misses most, measured again
    assert [(i.spec["model"], i.mode, i.batch, i.seq) for i in items[-2:]] == [("llama-2-7b", "decode", 128, 512),
                                                                                ("llama-2-7b", "decode", 8, 2048)]
    built = {}
    for i in items:
        if i.spec["model"] not in built:
            model, _ = build_hf_model(i.spec["model_type"], i.spec["config"], causal=i.spec["causal"])
            built[i.spec["model"]] = (type(model).__name__, sum(p.numel() for p in model.parameters()))
    # the published sizes of the two new architectures, with their LM heads
    assert built["t5-small"] == ("T5ForConditionalGeneration", 60_506_624)
    assert built["mamba-130m"] == ("MambaForCausalLM", 129_135_360)


def test_every_packaged_work_file_loads():
    for path in sorted(SPECS_DIR.glob("*.json")):
        assert load_work(path), path.name


def test_the_task_work_files_cover_torchvisions_other_tasks():
    from costmodel.frontends.zoo import tv_task

    for name in ("cpu_tasks.json", "h200_tasks.json"):
        items = load_work(SPECS_DIR / name)
        assert {"segmentation", "video", "detection"} <= {tv_task(i.spec["name"]) for i in items}
        # a detector's training step needs targets: none is asked for
        assert not [i for i in items if tv_task(i.spec["name"]) == "detection" and i.mode == "train"]
        # the check rows repeat classifier rows measured before
        assert any(tv_task(i.spec["name"]) == "classification" for i in items)
