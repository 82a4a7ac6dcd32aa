"""The benchmark's short table (the JSON report is the dict itself)."""

from __future__ import annotations

from pipeline.timing import STAGES

_COLUMNS = (*STAGES, "mask_generator")


def format_table(report: dict) -> str:
    """Conditions, one row per side (seconds, images/s, prompts and masks per image, stages), ratio, agreement."""
    c = report["conditions"]
    auto = [" (auto)" if v == "auto" else "" for v in c.get("configured_precision", ["", ""])]
    lines = [
        f"model {c['model']} ({c['weights']} weights), {c['backend']} encoder {c['precision']}{auto[0]}, decoder "
        f"{c.get('decoder_precision', 'fp32')}{auto[1]} on {c['machine']['device']} "
        f"[{c['machine']['cpu']}, {_cpu_class(c['machine'])}, {c['machine']['torch_threads']} threads], "
        f"prompts {c['prompts']}, "
        f"{c['images']['count']} images of {c['images']['megapixels_min']}-{c['images']['megapixels_max']} MP",
        f"{'side':<10}{'seconds':>9}{'img/s':>9}{'prompts':>9}{'masks':>7}{'peakMB':>8}  stage seconds",
    ]
    for side in ("ours", "reference"):
        if side not in report:
            continue
        r = report[side]
        stages = " ".join(f"{s}={r['stage_seconds'][s]:.2f}" for s in _COLUMNS if s in r["stage_seconds"])
        lines.append(
            f"{side:<10}{r['seconds']:>9.2f}{r['images_per_second']:>9.3f}{r['prompts_per_image']:>9.1f}"
            f"{r['masks_per_image']:>7.1f}{r['peak_memory_mb'] or 0:>8.0f}  {stages}"
        )
    if "allocator" in c:
        lines.append("malloc: " + ", ".join(f"{side} {how}" for side, how in c["allocator"].items()))
    if "gate" in report:
        g = report["gate"]
        lines.append(
            f"accuracy gate vs fp32: {'passed' if g['passed'] else 'FAILED'}, mean mask IoU {g['mask_iou_mean']:.3f} "
            f"(min {g['mask_iou_min']:.3f}, {g['prompts']} prompts, bar {g['threshold']})"
        )
    if "speedup" in report:
        lines.append(f"speedup (reference seconds / ours): {report['speedup']:.2f}x")
        lines.append(f"agreement: {report['agreement']}")
    return "\n".join(lines)


def format_throughput(rows: list[dict]) -> str:
    """Encoder-only / end-to-end throughput rows (model, precision, batch, images/s, GPU utilisation)."""
    header = f"{'what':<15}{'model':<22}{'precision':<10}{'compile':<8}{'batch':>6}{'images/s':>10}{'gpu util %':>11}"
    lines = [header + f"{'of encoder':>11}{'gate IoU':>9}"]
    for r in rows:
        extras = [r.get("gpu_utilization"), r.get("fraction_of_encoder_only"), r.get("gate_mask_iou")]
        util, fraction, gate = ("n/a" if v is None else f"{v:.3g}" for v in extras)
        lines.append(
            f"{r['what']:<15}{r['model']:<22}{r['precision']:<10}{r.get('compile', 'eager'):<8}{r['batch']:>6}"
            f"{r['images_per_second']:>10.1f}{util:>11}{fraction:>11}{gate:>9}"
        )
    return "\n".join(lines)


def _cpu_class(machine: dict) -> str:
    """``AVX512, bf16 native`` or ``AVX2, no bf16 (why)``: the CPU class a timing belongs to."""
    isa = machine.get("isa", "ISA unknown")
    if machine.get("bf16"):
        return f"{isa}, bf16 native"
    return f"{isa}, no bf16" + (f" ({machine['bf16_unavailable']})" if machine.get("bf16_unavailable") else "")
