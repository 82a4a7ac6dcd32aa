"""Typed, strict job configuration: dataclass defaults < YAML file < command line (``--set section.key=value``).

Every field has a one-line docstring; closed choices are ``Literal``, ranges the types of :mod:`pipeline.config.rules`
(checked on load). Operators receive only their own section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config.rules import AtLeastOne, Fraction, NonNegative, NonNegativeFloat

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Images per segment-actor call when segment.batch_size is unset.
CPU_SEGMENT_BATCH = 4
GPU_SEGMENT_BATCH = 32
PromptMode = Literal["grid", "boxes", "yolo", "text", "autoppn"]


class ConfigError(ValueError):
    """A bad flag, key or value; the message is one line naming it."""


@dataclass(frozen=True)
class InputConfig:
    """What to label."""

    uri: str = ""
    """Folder, file://..., s3://bucket/prefix (recursive), or a .txt/.csv/.parquet manifest of image URIs."""
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    """File extensions listed from folders and prefixes (case-insensitive)."""
    manifest_column: str | None = None
    """Manifest column holding the URIs; default: image_uri, uri, path or url."""
    limit: AtLeastOne | None = None
    """Label only the first N images (sorted by image id); for smoke runs."""
    allowed_roots: tuple[str, ...] = ()
    """Folders/prefixes every image URI must lie in, else the run is refused; default: --input (a manifest: any)."""


@dataclass(frozen=True)
class ModelConfig:
    """Which model, which weights, how it runs."""

    name: str = "efficientvit-sam-l0"
    """efficientvit-sam-l0|l1|l2|xl0|xl1 (or l0 ...), or a registered test/demo model."""
    weights: str | None = None
    """Local path, s3://... or hf://owner/repo/file; default: the model card's weights (random for test models)."""
    weights_sha256: str | None = None
    """Expected sha256 of the weight file; a mismatch fails the run before any image is read."""
    backend: Literal["torch", "onnx", "tensorrt"] = "torch"
    """Runtime that executes the model."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Encoder precision. auto: bf16 where the worker's device runs it natively (CPUs with AVX512-BF16 or AMX, GPUs
    from Ampere on) and these weights pass the accuracy gate there (mean mask IoU >= 0.98 against fp32), else fp32
    (``pipeline.runtime.auto_precision``; torch backend, fp32 on the others). bf16 set explicitly (torch) is checked
    against fp32 on the driver before the run and refused when it fails; fp16 (torch, tensorrt) keeps LayerNorm and
    attention in fp32 and is a GPU setting; the ONNX backend runs fp32 only."""
    decoder_precision: Literal["auto", "fp32", "bf16"] = "auto"
    """torch backend: mask decoder precision, auto as ``precision``. bf16 (image side; prompt tokens and heads stay
    fp32) set explicitly is gated on the driver like ``precision``; faster on CPUs with AVX512-BF16 or AMX, slower
    on CPUs without."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, or cuda[:N]; decided inside each worker."""
    channels_last: bool = True
    """torch backend: run the encoder in channels-last memory format (faster convolutions on CPUs and GPUs)."""
    compile: bool = False
    """torch backend: torch.compile the encoder (slow first call per input shape)."""
    aot_compile: bool = False
    """torch backend: run the encoder as AOTInductor packages, one per batch bucket, built on first use and cached
    in cache_dir/compiled for every actor and later run (key: weights, code, torch, device, precision, bucket)."""
    compile_buckets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """aot_compile: the static batch sizes compiled; a call runs in pieces of the largest, the last padded up."""
    cache_dir: str | None = None
    """Where downloaded weights and built engines are cached; default ~/.cache/samlabel."""


@dataclass(frozen=True)
class PromptsConfig:
    """Where prompts come from."""

    mode: PromptMode = "grid"
    """grid (segment everything), boxes (from a file), yolo (detector boxes), text (boxes of named classes from an
    open-vocabulary detector) or autoppn (learned proposals)."""
    file: str | None = None
    """Boxes file for mode=boxes: COCO JSON (file_name resolved against input.uri) or Parquet."""


@dataclass(frozen=True)
class BoxesConfig:
    """Box prompts: one mask per box, category and id kept."""

    multimask: bool = True
    """Take the best of 3 masks by predicted IoU (the official box protocol); false uses the single-mask token."""
    pred_iou_thresh: Fraction = 0.0
    """Drop masks whose predicted IoU is not above this (0 keeps every box's mask)."""
    stability_score_thresh: Fraction = 0.0
    """Drop masks whose stability score is below this (0 keeps every box's mask)."""
    stability_score_offset: float = 1.0
    """Logit offset for the stability score."""


@dataclass(frozen=True)
class TextConfig:
    """Text prompts (--prompts text): OWLv2 through transformers (the optional [text] extra) turns class names into
    boxes, which the box path turns into masks."""

    classes: tuple[str, ...] = ()
    """Class names, in category id order (ids 1, 2, ...); each name is also its text query."""
    file: str | None = None
    """Instead of classes: a YAML file of the classes in order, each a name, or name: [queries], or name: {queries:
    [...], threshold: 0.2} (local path or s3://)."""
    weights: str | None = None
    """The detector's folder (config.json, model.safetensors, tokenizer and preprocessor files): local path,
    s3://bucket/prefix/ or hf://owner/repo[@revision]; fetched before use, never downloaded by name."""
    box_thresh: Fraction = 0.1
    """Boxes whose best class score is not above this are dropped (a class's own threshold replaces it)."""
    nms_thresh: Fraction = 0.5
    """Per-class box NMS IoU threshold; 1 turns NMS off."""
    max_boxes_per_image: AtLeastOne = 100
    """Boxes kept per image, highest score first."""
    batch_size: AtLeastOne = 8
    """Images per detector call."""
    actors: int | None = None
    """Detector actors; default one per GPU in the cluster, or 1 without GPUs."""
    num_gpus: float | None = None
    """GPUs per detector actor; default a quarter of one when the cluster has GPUs."""


@dataclass(frozen=True)
class ClassifyConfig:
    """Names for the masks of any prompt mode: a zero-shot image-text model (CLIP or SigLIP through transformers, the
    optional [text] extra) scores a crop of each kept mask against the class names. Off while classes and file are
    empty; on, its classes replace the run's categories."""

    classes: tuple[str, ...] = ()
    """Class names, in category id order (ids 1, 2, ...); each name is also its text query."""
    file: str | None = None
    """Instead of classes: a YAML file of the classes in order, as text.file (name, name: [queries], or name:
    {queries: [...], threshold: 0.3})."""
    weights: str | None = None
    """The classifier's folder (config.json, model.safetensors, tokenizer and preprocessor files): local path,
    s3://bucket/prefix/ or hf://owner/repo[@revision]; fetched before use, never downloaded by name."""
    template: str = "a photo of a {}."
    """Each query is read as this text with {} replaced by the query; a class's texts are averaged."""
    min_score: Fraction = 0.0
    """A mask whose best class score is below this (or below that class's own threshold) is not named. Scores:
    CLIP's softmax over the classes, SigLIP's sigmoid of each class."""
    below: Literal["unknown", "drop"] = "unknown"
    """A mask that is not named gets the category "unknown" (the id after the classes), or is dropped."""
    background: Literal["mean", "keep"] = "mean"
    """Crop pixels outside the mask: the classifier's mean colour (only the mask is seen), or kept as they are."""
    margin: NonNegativeFloat = 0.1
    """Context around the mask: the square crop reaches this fraction of the box's longer side past each side."""
    batch_size: AtLeastOne = 64
    """Crops per classifier call."""
    precision: Literal["auto", "fp32"] = "auto"
    """Image tower precision. auto: bf16 (autocast) where the actor's device runs it natively and the class scores
    of probe crops stay within 0.02 of fp32, else fp32."""

    @property
    def enabled(self) -> bool:
        return bool(self.classes or self.file)


@dataclass(frozen=True)
class YoloConfig:
    """Detector prompts (--prompts yolo): YOLOv8 boxes through ultralytics (the optional [yolo] extra, AGPL-3.0)."""

    weights: str | None = None
    """Ultralytics .pt detector weights: local path, s3://... or hf://owner/repo/file (required for yolo)."""
    weights_sha256: str | None = None
    """Expected sha256 of the detector weights."""
    imgsz: AtLeastOne = 1024
    """Detector input size (long side); images reach the detector resized to it (MobileSAMv2: 1024)."""
    conf: Fraction = 0.4
    """Detector confidence threshold (MobileSAMv2: 0.4)."""
    iou: Fraction = 0.9
    """Detector NMS IoU threshold (MobileSAMv2: 0.9)."""
    max_det: AtLeastOne = 300
    """Boxes kept per image (ultralytics' default, as MobileSAMv2)."""
    classes: tuple[int | str, ...] = ()
    """Keep only these classes (indices or names); empty keeps all."""
    border_snap_px: NonNegativeFloat = 20.0
    """Box sides within this many original pixels of the image border are snapped to it (MobileSAMv2: 20)."""
    pred_iou_thresh: Fraction = 0.0
    """Drop masks whose predicted IoU is not above this (0 keeps every box's mask, as MobileSAMv2)."""
    stability_score_thresh: Fraction = 0.0
    """Drop masks whose stability score is below this (0 keeps every box's mask)."""
    batch_size: AtLeastOne = 8
    """Images per detector call."""
    actors: int | None = None
    """Detector actors; default one per GPU in the cluster, or 1 without GPUs."""
    num_gpus: float | None = None
    """GPUs per detector actor; default 0.25 when the cluster has GPUs (a segment actor takes the rest), else 0."""


@dataclass(frozen=True)
class AutoPPNConfig:
    """Learned proposals (--prompts autoppn): the AutoPPN head on the image embedding, then grid-mode filters."""

    weights: str | None = None
    """AutoPPN checkpoint (safetensors with its card, or .pt with a .json card beside it): path, s3:// or hf://."""
    weights_sha256: str | None = None
    """Expected sha256 of the AutoPPN weights."""
    prompt_mode: Literal["box+point", "box", "point"] = "box+point"
    """Prompt per peak: its point and box (single-mask token), its box only, or its point only (best of 3 masks)."""
    score_thresh: Fraction = 0.3
    """Point-NMS: minimum heatmap value of a peak."""
    nms_radius: NonNegativeFloat = 1.0
    """Point-NMS: peaks within this many output cells of a better peak of the same size group are dropped."""
    top_n: AtLeastOne = 256
    """Prompts kept per image, best heatmap values first."""
    pred_iou_thresh: Fraction = 0.8
    """Keep masks whose predicted IoU is strictly above this."""
    stability_score_thresh: Fraction = 0.85
    """Keep masks whose stability score is at least this."""
    stability_score_offset: float = 1.0
    """Logit offset for the stability score."""
    box_nms_thresh: Fraction = 0.7
    """Box IoU for non-maximum suppression of the masks."""
    min_mask_region_area: NonNegative = 0
    """Remove islands and holes smaller than this many pixels (0 = off)."""
    max_mask_area_frac: Fraction = 0.95
    """Drop masks covering more than this fraction of the image."""


@dataclass(frozen=True)
class StorageConfig:
    """How to reach object storage. Credentials come from the standard AWS chain (env, profile, instance role)."""

    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (e.g. http://minio:9000); default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS."""
    s3_region: str | None = None
    """Region; default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1."""
    s3_anonymous: bool = False
    """Unsigned requests (public buckets)."""
    max_attempts: AtLeastOne = 10
    """Attempts per storage request, with exponential backoff, before a read or write fails."""


@dataclass(frozen=True)
class DecodeConfig:
    """Reading and decoding images on CPU tasks."""

    max_file_bytes: AtLeastOne = 256 * 1024 * 1024
    """Larger files are recorded in errors/ as too_large without being read."""
    max_pixels: AtLeastOne = 100_000_000
    """Images whose declared width×height exceeds this are recorded as too_large without being decoded."""
    batch_size: AtLeastOne = 16
    """Images per read/decode task (at most ``output.images_per_part``)."""
    num_cpus: float = 1.0
    """CPUs reserved per decode task."""
    device: Literal["cpu", "cuda"] = "cpu"
    """cuda: JPEGs travel compressed and are decoded by nvJPEG inside the segment actor on its GPU (batched), after
    the decode task checked their header and limits; other formats, JPEGs with an EXIF rotation or a CMYK colour
    space, and files nvJPEG rejects are decoded on the CPU as with cpu. Needs GPU segment actors; not with yolo
    prompts or grid crop layers."""


@dataclass(frozen=True)
class GridConfig:
    """Segment-everything prompts: SAM's automatic mask generator semantics, filtered on low-res logits."""

    points_per_side: AtLeastOne = 32
    """Grid points per side on the full image (crop layer n uses points_per_side / downscale_factor**n)."""
    points_per_batch: AtLeastOne = 64
    """Point prompts per decoder call (shared across images)."""
    pred_iou_thresh: Fraction = 0.88
    """Keep masks whose predicted IoU is strictly above this."""
    stability_score_thresh: Fraction = 0.95
    """Keep masks whose stability score is at least this."""
    stability_score_offset: float = 1.0
    """Logit offset for the stability score."""
    box_nms_thresh: Fraction = 0.7
    """Box IoU for non-maximum suppression within a crop."""
    crop_n_layers: NonNegative = 0
    """Extra layers of image crops (0 = whole image only)."""
    crop_nms_thresh: Fraction = 0.7
    """Box IoU for non-maximum suppression across crops."""
    crop_overlap_ratio: float = 512 / 1500
    """Overlap of neighbouring crops, as a fraction of the image side."""
    crop_n_points_downscale_factor: AtLeastOne = 1
    """Points per side are divided by this factor in each further crop layer."""
    min_mask_region_area: NonNegative = 0
    """Remove islands and holes smaller than this many pixels (0 = off)."""
    max_mask_area_frac: Fraction = 0.95
    """Drop masks covering more than this fraction of the image (SA-1B drops near-full-image masks)."""
    exact: bool = False
    """true: the reference generator's output: stability, boxes and box NMS on every candidate upsampled to full
    resolution (slower); false: scored and de-duplicated on the 256×256 logits, only survivors upsampled."""


@dataclass(frozen=True)
class SegmentConfig:
    """The segment actor (encoder → prompts → mask decoder → filter → RLE): resources and batching."""

    batch_size: AtLeastOne | None = None
    """Images per actor call (one encoder forward); default 4 on a CPU actor, 32 on a GPU actor (a GPU is kept busy
    only by large batches)."""
    decoder_chunk: AtLeastOne = 64
    """Prompts per mask-decoder forward, shared across images; bounds memory."""
    actors: int | None = None
    """Segment actors; default one per GPU in the cluster, or 1 without GPUs."""
    num_gpus: float | None = None
    """GPUs per actor; default 1 when the cluster has GPUs, else 0."""
    num_cpus: float | None = None
    """CPUs reserved per actor; default 2 with a GPU, else all CPUs but one."""
    threads: int | None = None
    """Compute threads of the actor (torch / ONNX Runtime); default: all cores on CPU, num_cpus with a GPU."""
    max_prompts_per_image: AtLeastOne = 25_000
    """Boxes past this are dropped (file order kept) and counted; a grid making more prompts is refused."""
    max_masks_per_image: AtLeastOne = 5_000
    """Masks past this are dropped, lowest score first, and counted (images.masks_dropped, run.json)."""
    keep_freed_memory: bool = True
    """CPU actors: glibc keeps freed memory for the next tensor instead of returning it to the OS (no page faults
    on every large tensor; docs/performance.md); resident memory then stays near its peak."""

    def images_per_call(self, gpu: bool) -> int:
        """``batch_size``, or its default for a CPU or a GPU actor."""
        return self.batch_size or (GPU_SEGMENT_BATCH if gpu else CPU_SEGMENT_BATCH)


@dataclass(frozen=True)
class OutputConfig:
    """Where and how results are written."""

    uri: str = ""
    """Output folder (local, file:// or s3://); rerunning into it resumes an interrupted run."""
    coco: bool = True
    """Write COCO instances at commit: coco.json, or shards under coco/ past ``coco_max_images``."""
    coco_segmentation: Literal["rle", "polygon"] = "rle"
    """Mask encoding in coco.json; Parquet always has RLE."""
    coco_max_images: AtLeastOne = 100_000
    """Runs with more labeled images write COCO as shards, one per part under coco/ with coco/index.json, instead of
    one coco.json; ``samlabel export coco`` merges them into one file."""
    run_id: str | None = None
    """Run id stored in every row; default: a hash of the labeling settings (model, weights, prompts, thresholds)."""
    images_per_part: AtLeastOne = 256
    """Images per part file written by one write task: the unit of resume after a crash. Parts reach the output
    while the run goes on; a crash loses the images of the tasks in flight and of the part being gathered (about
    two parts)."""
    report: bool = True
    """Write report/ at commit: an HTML review page (counts, histograms, image lists, overlays of a sample)."""
    report_sample: NonNegative = 12
    """Images drawn with their masks in the report (the extremes first, then a deterministic sample)."""


@dataclass(frozen=True)
class RayConfig:
    """Cluster connection."""

    address: str | None = None
    """Ray address; default RAY_ADDRESS (set by `ray job submit`), else a local Ray started for this run."""
    num_cpus: int | None = None
    """CPUs of the local Ray (ignored when connecting to a cluster)."""
    num_gpus: int | None = None
    """GPUs of the local Ray (ignored when connecting to a cluster)."""
    progress: bool = True
    """Show Ray Data progress bars."""


@dataclass(frozen=True)
class LabelConfig:
    """The labeling job (``python -m jobs.label``)."""

    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    boxes: BoxesConfig = field(default_factory=BoxesConfig)
    yolo: YoloConfig = field(default_factory=YoloConfig)
    text: TextConfig = field(default_factory=TextConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    autoppn: AutoPPNConfig = field(default_factory=AutoPPNConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)
