"""The decode-cost benchmark: core time per image of the decode operator, and the cores a GPU needs at a rate."""

from __future__ import annotations

from pipeline.bench.decode_cost import ImageKind, cores_per_gpu, decode_cost, format_decode_cost


def test_decode_cost_of_small_jpegs_and_pngs() -> None:
    rows = [decode_cost(ImageKind(f"{f} 160x120", 120, 160, f), images=3, long_side=64) for f in ("JPEG", "PNG")]
    assert [r["kind"] for r in rows] == ["JPEG 160x120", "PNG 160x120"]
    assert all(r["core_ms_per_image"] > 0 and r["wall_ms_per_image"] > 0 and r["images"] == 3 for r in rows)
    table = format_decode_cost(rows, [100.0, 1500.0])
    assert "cores @1500/s" in table and "JPEG 160x120" in table


def test_cores_per_gpu() -> None:
    assert cores_per_gpu(4.0, 1500.0) == 6.0
    assert cores_per_gpu(180.0, 350.0) == 63.0
