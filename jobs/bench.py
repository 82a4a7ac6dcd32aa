"""Benchmark a labeling configuration against the reference way: ``python -m jobs.bench [--prompts boxes|grid] ...``.

Both sides run in this process on the same images and weights, back to back: ours (the labeling job's operators:
read, decode, encode, prompts, mask decoder, filter, RLE, Parquet write) and the reference (one image at a time
through the official predictor's semantics; SAM's automatic mask generator for grids). Prints a short table and
writes the JSON report (``--json``). ``--encoder-only`` measures encoder throughput per batch size instead (the
GPU benchmark: ``python -m jobs.bench --device cuda --gpu-table``, see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from jobs.cli import prog
from pipeline.bench.benchmark import BenchOptions, run_bench
from pipeline.bench.report import format_table, format_throughput
from pipeline.config.loading import load_config
from pipeline.config.sections import ConfigError, LabelConfig

FLAGS = {
    "model": "model.name",
    "weights": "model.weights",
    "prompts": "prompts.mode",
    "backend": "model.backend",
    "device": "model.device",
    "precision": "model.precision",
    "decoder_precision": "model.decoder_precision",
    "threads": "segment.threads",
    "points_per_side": "grid.points_per_side",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog("jobs.bench"), description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="folder of photos (default: generate --images photo-like JPEGs)")
    parser.add_argument("--images", type=int, default=4, help="images to generate, or the most to take from --input")
    parser.add_argument("--size", default="1536x2048", help="HxW of generated images (default 1536x2048, 3.1 MP)")
    parser.add_argument("--prompts", choices=["boxes", "grid"], default="boxes")
    parser.add_argument("--boxes-per-image", type=int, default=10, help="generated box prompts per image")
    parser.add_argument("--points-per-side", type=int, help="grid points per side (config default 32)")
    parser.add_argument("--model", help="efficientvit-sam-l0 ... xl1, or mini-l / mini-xl")
    parser.add_argument("--weights", help="weight file for both sides (default: seeded random weights)")
    parser.add_argument("--backend", choices=["torch", "onnx", "tensorrt"])
    parser.add_argument("--device", help="cpu, cuda or auto")
    parser.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16"], help="encoder precision (ours; config default auto)"
    )
    parser.add_argument(
        "--decoder-precision", choices=["auto", "fp32", "bf16"], help="mask decoder precision (ours; default auto)"
    )
    parser.add_argument("--threads", type=int, help="compute threads (default: every core)")
    parser.add_argument("--config", help="YAML config (sections as in jobs/configs/label.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--no-reference", action="store_true", help="time our side only")
    parser.add_argument(
        "--reference-allocator",
        choices=["default", "same"],
        default="default",
        help="default: the reference runs with a plain Python process's malloc settings (the usual way); same: with "
        "ours (segment.keep_freed_memory), for a like-for-like figure",
    )
    parser.add_argument("--encoder-only", action="store_true", help="encoder images/s per --batch-sizes")
    parser.add_argument(
        "--gpu-table",
        action="store_true",
        help="per model (--models) and precision (--precisions): encoder-only and segment+10 boxes images/s, gate",
    )
    parser.add_argument("--models", default="efficientvit-sam-l0,efficientvit-sam-xl1", help="for --gpu-table")
    parser.add_argument("--precisions", default="fp32,bf16,fp16", help="for --gpu-table")
    parser.add_argument("--compile-modes", default="eager", help="for --gpu-table: eager, aot or both (eager,aot)")
    parser.add_argument("--batch-sizes", default="1,8,16", help="batch sizes for --encoder-only")
    parser.add_argument("--iterations", type=int, default=20, help="timed encoder calls per batch size")
    parser.add_argument(
        "--scale",
        metavar="N,N,...",
        help="the commit at bucket scale: synthetic finished runs of N images (--masks each) committed as a rerun "
        "does, one fresh process per N; reports seconds, peak driver memory and output sizes",
    )
    parser.add_argument(
        "--decode-cost",
        action="store_true",
        help="core-ms per image of the decode stage (COCO-size JPEG, 12 MP JPEG, large PNG) and the CPU cores one "
        "GPU needs at --rates",
    )
    parser.add_argument("--rates", default="350,1500", help="images/s per GPU for --decode-cost")
    parser.add_argument(
        "--text-prompts",
        action="store_true",
        help="--prompts text: detector and segment images/s on --images generated images (text.weights, else "
        "OWLv2-base's architecture with random weights; text.classes, else three)",
    )
    parser.add_argument(
        "--classify-cost",
        action="store_true",
        help="classify: ms per mask of naming masks (crops and classifier) on --images generated images at each "
        "--masks-per-image (classify.weights, else CLIP ViT-B/16's architecture with random weights)",
    )
    parser.add_argument("--masks-per-image", default="10,50", help="masks per image for --classify-cost")
    parser.add_argument(
        "--feeding",
        metavar="GPUS,CPUS,DECODE_MS",
        help="the labeling graph on a local Ray declaring GPUS GPUs and CPUS CPUs, decode costing DECODE_MS per "
        "image and instant segment actors: images/s reached against what the decode CPUs allow (--images images)",
    )
    parser.add_argument("--masks", type=int, default=50, help="masks per image for --scale")
    parser.add_argument("--workdir", type=Path, help="--scale: where the runs are written (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the report here")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> LabelConfig:
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in FLAGS.items() if getattr(args, flag) is not None]
    return load_config(LabelConfig, args.config, overrides + args.set)


def encoder_only(cfg: LabelConfig, args: argparse.Namespace) -> dict:
    import tempfile

    from pipeline.bench.benchmark import _with_weights, resolved_precision
    from pipeline.bench.throughput import encoder_throughput
    from pipeline.runtime.load import load_runtime

    with tempfile.TemporaryDirectory(prefix="samlabel-bench-") as work:
        cfg, weights = _with_weights(cfg, Path(work), args.seed)
        runtime = load_runtime(cfg.model, cfg.storage, cfg.segment.decoder_chunk)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        compiled = getattr(runtime, "compiled", None)
        built_before = sum(compiled.compile_seconds.values()) if compiled else 0.0
        row = encoder_throughput(runtime, batch, args.iterations)
        precision = resolved_precision(runtime, cfg)["precision"]
        if compiled is not None:  # packages are built (or loaded) in the warm-up calls
            built = sum(compiled.compile_seconds.values()) - built_before
            row = {**row, "compile": "aot", "compile_seconds": round(built, 1)}
        rows.append({"what": "encoder-only", "model": cfg.model.name, "precision": precision, **row})
    return {"weights": weights, "device": str(runtime.device), "rows": rows}


def gpu_table_report(cfg: LabelConfig, args: argparse.Namespace) -> dict:
    import tempfile

    from pipeline.bench.gpu_table import TableSpec, gpu_table

    spec = TableSpec(
        models=args.models.split(","),
        precisions=args.precisions.split(","),
        batches=[int(b) for b in args.batch_sizes.split(",")],
        iterations=args.iterations,
        compile_modes=args.compile_modes.split(","),
        boxes_per_image=args.boxes_per_image,
        grid_points_per_side=args.points_per_side or 32,
    )
    if set(spec.compile_modes) - {"eager", "aot"}:
        raise ValueError(f"--compile-modes takes eager and aot, got {args.compile_modes}")
    with tempfile.TemporaryDirectory(prefix="samlabel-gpu-table-") as work:
        rows = gpu_table(cfg, spec, Path(work))
    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "rows": rows}


def text_prompts_report(cfg: LabelConfig, args: argparse.Namespace, size_hw: tuple[int, int]) -> dict:
    import tempfile

    from pipeline.bench.text_prompts import text_prompt_bench
    from pipeline.runtime.capability import cpu_report

    with tempfile.TemporaryDirectory(prefix="samlabel-text-") as work:
        report = text_prompt_bench(cfg, args.images, size_hw, Path(work), args.seed)
    return {"machine": cpu_report(), "threads": torch.get_num_threads(), **report}


def classify_cost_report(cfg: LabelConfig, args: argparse.Namespace, size_hw: tuple[int, int]) -> dict:
    import tempfile

    from pipeline.bench.classify_cost import classify_cost_bench
    from pipeline.runtime.capability import cpu_report

    counts = [int(v) for v in args.masks_per_image.split(",")]
    with tempfile.TemporaryDirectory(prefix="samlabel-classify-") as work:
        report = classify_cost_bench(cfg, args.images, size_hw, counts, Path(work), args.seed)
    return {"machine": cpu_report(), "threads": torch.get_num_threads(), **report}


def feeding_report(args: argparse.Namespace) -> dict:
    import tempfile

    from pipeline.bench.feeding import feeding_check

    gpus, cpus, decode_ms = args.feeding.split(",")
    with tempfile.TemporaryDirectory(prefix="samlabel-feeding-") as work:
        return feeding_check(Path(work), args.images, int(gpus), int(cpus), float(decode_ms))


def decode_cost_report(cfg: LabelConfig, args: argparse.Namespace) -> dict:
    from pipeline.bench.decode_cost import KINDS, decode_cost
    from pipeline.models import model_card
    from pipeline.runtime.capability import cpu_report

    torch.set_num_threads(1)
    long_side = model_card(cfg.model.name).encoder_input_size
    rows = [decode_cost(kind, args.images, long_side) for kind in KINDS]
    rates = [float(r) for r in args.rates.split(",")]
    return {"machine": cpu_report(), "long_side": long_side, "rates": rates, "rows": rows}


def scale_report(cfg: LabelConfig, args: argparse.Namespace) -> dict:
    import shutil
    import tempfile

    from pipeline.bench.scale import measure_commit
    from pipeline.runtime.capability import cpu_report

    rows = []
    root = Path(args.workdir or tempfile.mkdtemp(prefix="samlabel-scale-"))
    for images in (int(n) for n in args.scale.split(",")):
        folder = root / f"n{images}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        row = measure_commit(folder, images, args.masks, cfg.output.images_per_part, cfg.output.coco_max_images)
        print(format_scale([row]).splitlines()[-1], flush=True)
        rows.append(row)
        shutil.rmtree(folder, ignore_errors=True)
    return {"machine": cpu_report(), "images_per_part": cfg.output.images_per_part, "rows": rows}


def format_scale(rows: list[dict]) -> str:
    header = "| images | masks | commit s | rerun s | driver peak RSS MB | RSS before commit MB | COCO MB (files) |"
    lines = [header, "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['images']:,} | {r['masks']:,} | {r['commit_seconds']} | {r['rerun_seconds']} | {r['peak_rss_mb']} "
            f"| {r['rss_before_commit_mb']} | {r['coco_mb']} ({r['coco_files']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_config(args)
        height, width = (int(v) for v in args.size.lower().split("x"))
        if cfg.segment.threads:
            torch.set_num_threads(cfg.segment.threads)
        if args.text_prompts:
            report = text_prompts_report(cfg, args, (height, width))
            print(json.dumps(report, indent=2))
        elif args.classify_cost:
            report = classify_cost_report(cfg, args, (height, width))
            print(json.dumps(report, indent=2))
        elif args.feeding:
            report = feeding_report(args)
            print(json.dumps(report, indent=2))
        elif args.decode_cost:
            from pipeline.bench.decode_cost import format_decode_cost

            report = decode_cost_report(cfg, args)
            print(f"decode stage on {report['machine']['cpu']}, one thread, resized to {report['long_side']} px long")
            print(format_decode_cost(report["rows"], report["rates"]))
        elif args.scale:
            report = scale_report(cfg, args)
            print(format_scale(report["rows"]))
        elif args.gpu_table:
            report = gpu_table_report(cfg, args)
            print(format_throughput(report["rows"]))
        elif args.encoder_only:
            report = encoder_only(cfg, args)
            print(format_throughput(report["rows"]))
        else:
            options = BenchOptions(
                input_dir=args.input,
                count=args.images,
                size_hw=(height, width),
                boxes_per_image=args.boxes_per_image,
                reference=not args.no_reference,
                reference_allocator=args.reference_allocator,
                seed=args.seed,
            )
            report = run_bench(cfg, options)
            print(format_table(report))
    except (ConfigError, ValueError, OSError) as e:
        print(f"samlabel bench: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
