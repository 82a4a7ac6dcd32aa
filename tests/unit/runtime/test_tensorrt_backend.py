"""TensorRT backend up to the engine build: the ONNX files it consumes, the fp32 pinning rules, the optimisation
profiles, the cache key and the error without TensorRT. Building and running engines needs a GPU (tests/gpu)."""

from __future__ import annotations

import importlib.util

import onnx
import pytest

from pipeline.runtime.export import export_onnx
from pipeline.runtime.tensorrt_backend import (
    decoder_shapes,
    encoder_shapes,
    engine_cache_key,
    fp32_node_names,
    import_tensorrt,
)
from tests.fixtures import fixture_model


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, onnx.ModelProto]:
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(fixture_model("l"), folder, model_name="mini-l")
    return {name: onnx.load(str(folder / f"{name}.onnx")) for name in ("encoder", "decoder")}


def test_exported_files_are_valid_and_match_the_profiles(graphs) -> None:
    for name, shapes in (("encoder", encoder_shapes(512)), ("decoder", decoder_shapes())):
        onnx.checker.check_model(graphs[name], full_check=True)
        inputs = {i.name: i.type.tensor_type.shape.dim for i in graphs[name].graph.input}
        assert set(inputs) == set(shapes)
        for input_name, (low, opt, high) in shapes.items():
            dims = inputs[input_name]
            assert len(dims) == len(low) == len(opt) == len(high)
            for d, lo, op, hi in zip(dims, low, opt, high, strict=True):
                # A fixed ONNX dim must be fixed in the profile too; dynamic ones span lo <= opt <= hi.
                assert (lo == op == hi == d.dim_value) if d.dim_value else (1 <= lo <= op <= hi)


def test_fp16_rules_pin_norms_attention_and_upsampling_but_not_convolutions(graphs) -> None:
    encoder = {n.name: n.op_type for n in graphs["encoder"].graph.node}
    pinned = set(fp32_node_names(graphs["encoder"].graph))
    final_norm = {n for n, op in encoder.items() if n.startswith("/image_encoder/norm/") and op != "Constant"}
    assert final_norm and final_norm <= pinned  # the LayerNorm2d ending the encoder (ReduceMean ... Div)
    resizes = {n for n, op in encoder.items() if op == "Resize"}
    assert resizes and resizes <= pinned  # the neck's bicubic upsampling
    attention = {n for n, op in encoder.items() if "/context_module/main/" in n and op in ("MatMul", "Div", "Relu")}
    assert attention and attention <= pinned  # LiteMLA's linear attention
    convs = {n for n, op in encoder.items() if op == "Conv"}
    assert convs and not convs & pinned  # the bulk of the work stays fp16
    assert len(pinned) < 0.25 * len(encoder)
    decoder = graphs["decoder"].graph
    layer_norms = {n.name for n in decoder.node if n.op_type in ("LayerNormalization", "Softmax")}
    upscaling_norm = {n.name for n in decoder.node if "/output_upscaling.1/" in n.name and n.op_type != "Constant"}
    assert layer_norms and upscaling_norm and (layer_norms | upscaling_norm) <= set(fp32_node_names(decoder))


def test_cache_key_separates_weights_versions_gpus_and_precisions() -> None:
    key = engine_cache_key("ab" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "fp16")
    assert key == "abababababababab-trt10.9.0-nvidia-h100-80gb-hbm3-fp16"
    others = {
        engine_cache_key("cd" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "fp16"),
        engine_cache_key("ab" * 32, "10.8.0", "NVIDIA H100 80GB HBM3", "fp16"),
        engine_cache_key("ab" * 32, "10.9.0", "NVIDIA A100-SXM4-40GB", "fp16"),
        engine_cache_key("ab" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "fp32"),
    }
    assert key not in others and len(others) == 4
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key("ab" * 32, "10.9.0", "gpu", "bf16")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_fails_in_one_line_naming_the_extra() -> None:
    with pytest.raises(ImportError, match=r"install the \[trt\] extra") as info:
        import_tensorrt()
    assert "\n" not in str(info.value)
