"""Resources and batch sizes of the segment actors, from the cluster's CPUs and GPUs and the configuration."""

from __future__ import annotations

from operators.graph import SegmentResources, segment_resources
from pipeline.config.loading import load_config
from pipeline.config.sections import LabelConfig


def _config(*overrides: str) -> LabelConfig:
    return load_config(LabelConfig, None, ["input.uri=in", "output.uri=out", *overrides])


def test_cpu_cluster_gets_one_actor_on_all_cpus_but_one_with_small_batches() -> None:
    assert segment_resources(_config(), {"CPU": 8.0}) == SegmentResources(1, 0.0, 7.0, 4)


def test_gpu_cluster_gets_one_actor_per_gpu_with_large_batches() -> None:
    assert segment_resources(_config(), {"CPU": 32.0, "GPU": 4.0}) == SegmentResources(4, 1.0, 2.0, 32)


def test_a_set_batch_size_is_kept_on_either() -> None:
    for cluster in ({"CPU": 8.0}, {"CPU": 8.0, "GPU": 1.0}):
        assert segment_resources(_config("segment.batch_size=12"), cluster).batch_size == 12


def test_jpegs_decoded_on_the_gpu_need_gpu_actors() -> None:
    import pytest

    from pipeline.config.sections import ConfigError

    cfg = _config("decode.device=cuda")
    assert segment_resources(cfg, {"CPU": 16.0, "GPU": 8.0}).num_gpus == 1.0
    with pytest.raises(ConfigError, match="decode.device=cuda .* the cluster has no GPU"):
        segment_resources(cfg, {"CPU": 16.0})
