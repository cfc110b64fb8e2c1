import pytest

from costmodel import InvalidInputError, UnknownModelError
from costmodel.frontends import to_graph, zoo_graph
from costmodel.frontends.zoo import build_zoo_model, parse_model_ref


def test_torchvision_and_timm_names():
    g = zoo_graph("torchvision:resnet18", batch=2)
    assert g.meta["name"] == "torchvision:resnet18"
    assert g.params == 11_689_512 and g.meta["batch"] == 2
    t = zoo_graph("timm:poolformer_s12", batch=1)
    assert t.params == 11_915_176
    assert t.op_counts()["group_norm"] == 24


def test_bare_name_resolves_to_torchvision():
    assert build_zoo_model("resnet18").name == "torchvision:resnet18"


@pytest.mark.parametrize(
    "spec,params",
    [
        ({"family": "mobilenet", "kw": {"width_mult": 0.5}, "name": "mobilenet_v2", "res": 224, "src": "tv"}, 1968680),
        ({"family": "resnet", "name": "resnet50", "res": 160, "src": "tv"}, 25557032),
        ({"src": "tv_resnet", "block": "BasicBlock", "layers": [1, 1, 1, 1]}, 5418792),
        ({"src": "tv_vit", "kw": {"patch_size": 16, "num_layers": 2, "num_heads": 4, "hidden_dim": 64, "mlp_dim": 128}, "res": 64}, None),
    ],
)
def test_data_specs_rebuild(spec, params):
    zm = build_zoo_model(spec)
    assert zm.input_shape == (3, spec.get("res", 224), spec.get("res", 224))
    g = zoo_graph(spec, batch=1)
    if params is not None:
        assert g.params == params
    assert g.meta["input_shape"] == list(zm.input_shape)


def test_json_string_spec():
    g = to_graph('{"src": "tv", "name": "squeezenet1_1"}', batch=1)
    assert g.params == 1_235_496


def test_a_spec_file_is_a_spec_and_bad_fields_are_named(tmp_path):
    from costmodel._errors import ModelLoadError
    from costmodel.frontends import looks_like_onnx_path

    f = tmp_path / "net.json"
    f.write_text('{"src": "tv", "name": "squeezenet1_1"}')
    assert not looks_like_onnx_path(str(f)) and not looks_like_onnx_path(f)
    assert to_graph(str(f), batch=1).params == 1_235_496
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(InvalidInputError, match="must hold a JSON object"):
        parse_model_ref(str(tmp_path / "list.json"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InvalidInputError, match="is not valid JSON"):
        parse_model_ref(str(tmp_path / "bad.json"))
    with pytest.raises(ModelLoadError, match="no such model spec file"):
        parse_model_ref(str(tmp_path / "missing.json"))
    with pytest.raises(InvalidInputError, match="spec 'res'.*positive integer, got 'abc'"):
        parse_model_ref({"name": "resnet18", "res": "abc"})
    with pytest.raises(InvalidInputError, match="spec 'kw'.*JSON object, got 5"):
        parse_model_ref({"src": "tv", "name": "resnet18", "kw": 5})
    with pytest.raises(InvalidInputError, match="does not fit the constructor of tv:resnet18.*'foo'"):
        build_zoo_model({"name": "resnet18", "kw": {"foo": 1}})


def test_unknown_names_suggest():
    with pytest.raises(UnknownModelError, match="Did you mean: resnet50") as e:
        build_zoo_model("torchvision:resnet5O")
    with pytest.raises(UnknownModelError) as e:  # a name both zoos have is suggested once
        build_zoo_model("resnet5O")
    assert str(e.value).count("resnet50,") + str(e.value).count("resnet50?") == 1, str(e.value)
    with pytest.raises(UnknownModelError, match="poolformer_s12"):
        build_zoo_model("timm:poolformer_s1")
    with pytest.raises(UnknownModelError, match="unknown model source"):
        parse_model_ref("keras:resnet50")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        parse_model_ref("{not json")


def test_cache_hit_is_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    a = zoo_graph("torchvision:mobilenet_v3_small", batch=3)
    files = list((tmp_path / "graphs").glob("*.json.gz"))
    assert len(files) == 1
    b = zoo_graph("torchvision:mobilenet_v3_small", batch=3)
    assert a.to_dict() == b.to_dict()


def test_torchvision_models_default_to_their_weights_resolution(tmp_path, monkeypatch):
    from costmodel.frontends.zoo import default_resolution, tv_native_resolution

    assert tv_native_resolution("inception_v3") == 299
    assert tv_native_resolution("efficientnet_b3") == 300
    assert tv_native_resolution("swin_v2_t") == 256
    # several weights: the smallest crop (vit_h_14's are 518 and 224; its constructor's image size is 224)
    assert tv_native_resolution("vit_h_14") == 224
    assert tv_native_resolution("resnet50") == 224
    assert default_resolution({"src": "tv", "name": "inception_v3", "res": 160}) == (160, "spec")
    assert default_resolution({"name": "inception_v3"}) == (299, "torchvision weights")
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    # inception_v3's auxiliary classifier runs in training and needs its 299-pixel input: at 224 it fails
    g = zoo_graph("torchvision:inception_v3", batch=2, mode="training")
    assert g.meta["input_shape"] == [3, 299, 299]
    assert zoo_graph("torchvision:inception_v3", batch=2, input_shape=(3, 342, 342)).meta["input_shape"] == [3, 342, 342]


def test_torchvision_tasks_build_without_downloading(tmp_path, monkeypatch):
    """Segmentation and detection builders default to ImageNet backbone weights, which they would download;
    the zoo builds them with none, each task at the input it takes."""
    from costmodel.frontends.zoo import default_resolution, tv_task

    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    assert tv_task("fcn_resnet50") == "segmentation" and tv_task("resnet50") == "classification"
    assert default_resolution({"name": "deeplabv3_resnet50"}) == (520, "torchvision segmentation models")
    assert default_resolution({"name": "fasterrcnn_mobilenet_v3_large_320_fpn"})[0] == 320
    assert default_resolution({"name": "retinanet_resnet50_fpn"})[0] == 800
    seg = zoo_graph("torchvision:lraspp_mobilenet_v3_large", batch=1)
    assert seg.meta["input_shape"] == [3, 520, 520]
    video = zoo_graph("torchvision:r3d_18", batch=2)
    assert video.meta["input_shape"] == [3, 16, 112, 112]
    assert any(n.kind == "conv" and len(n.in_shapes[1]) == 5 for n in video.nodes)  # 3-D kernels


def test_a_zoo_detector_is_built_on_the_cpu_and_run_once(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    zm = build_zoo_model("torchvision:ssdlite320_mobilenet_v3_large")
    assert next(zm.module.parameters()).device.type == "cpu" and zm.input_shape == (3, 320, 320)
    a = zoo_graph("torchvision:ssdlite320_mobilenet_v3_large", batch=1, cache=False)
    assert a.meta["capture"] == "trace-real"
    assert any(n.op == "aten.nms" for n in a.nodes)
    # seeded weights and inputs: the same name gives the same graph
    b = zoo_graph("torchvision:ssdlite320_mobilenet_v3_large", batch=1, cache=False)
    assert [n.out_shapes for n in a.nodes] == [n.out_shapes for n in b.nodes]


@pytest.mark.parametrize("name, match", [
    ("raft_small", r"two frames.*inputs=\(frame1, frame2\)"),
    ("quantized_resnet50", r"int8.*torchvision:resnet50"),
])
def test_torchvision_models_a_name_cannot_feed_are_refused(name, match):
    with pytest.raises(InvalidInputError, match=match):
        build_zoo_model(f"torchvision:{name}")
