"""Config precedence (defaults < YAML < --set), strictness, one-line errors naming the key, cross-field rules."""

import re

import pytest
import yaml

from pipeline.config.document import defaults_yaml, field_docs
from pipeline.config.loading import load_config, to_dict
from pipeline.config.sections import ConfigError, GridConfig, LabelConfig
from pipeline.labeling.identity import run_fingerprint
from pipeline.labeling.rules import validate_label_config
from pipeline.train.autoppn.config import TrainJobConfig, validate_train_config
from tests.fixtures import REPO


def test_precedence_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("grid:\n  points_per_side: 8\n  pred_iou_thresh: 0.5\nmodel:\n  name: mini-l\n")
    cfg = load_config(LabelConfig, path, ["grid.points_per_side=4", "input.extensions=[.png]"])
    assert cfg.grid.points_per_side == 4  # --set wins over YAML
    assert cfg.grid.pred_iou_thresh == 0.5  # YAML wins over defaults
    assert cfg.grid.box_nms_thresh == 0.7  # default kept
    assert cfg.model.name == "mini-l"
    assert cfg.input.extensions == (".png",)
    assert to_dict(cfg)["input"]["extensions"] == [".png"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grid.points_per_sid=3", "unknown config key 'grid.points_per_sid'"),
        ("gird.points_per_side=3", "unknown config key 'gird'"),
        ("grid.points_per_side=many", "grid.points_per_side must be an integer"),
        ("model.precision=fp8", "model.precision must be one of auto, fp32, bf16, fp16"),
        ("boxes.multimask=1", "boxes.multimask must be true or false"),
        ("grid.pred_iou_thresh=high", "grid.pred_iou_thresh must be a number"),
        ("points_per_side", "--set expects section.key=value"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(LabelConfig, None, [override])
    assert "\n" not in str(info.value)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("grid: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(LabelConfig, path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(LabelConfig, path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(LabelConfig, tmp_path / "missing.yaml")


def _valid(*extra):
    return load_config(LabelConfig, None, ["input.uri=in", "output.uri=out", *extra])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["output.uri=''"], "--output is required"),
        (["model.name=vit_h"], "unknown model 'vit_h'"),
        (["prompts.mode=boxes"], "--prompts boxes needs --prompts-file"),
        (["prompts.file=x.json"], "only used with --prompts boxes"),
        (["grid.pred_iou_thresh=1.5"], "grid.pred_iou_thresh must be between 0 and 1"),
        (["segment.batch_size=0"], "segment.batch_size must be at least 1"),
        (["prompts.mode=yolo"], "--prompts yolo needs detector weights"),
        (["prompts.mode=autoppn"], "--prompts autoppn needs its head"),
        (["prompts.mode=autoppn", "autoppn.weights=h", "autoppn.top_n=0"], "autoppn.top_n must be at least 1"),
        (["yolo.conf=2"], "yolo.conf must be between 0 and 1"),
    ],
)
def test_cross_field_rules(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_label_config(_valid(*overrides))


def test_fingerprint_tracks_what_changes_labels():
    base = _valid()
    assert run_fingerprint(base, "a") == run_fingerprint(_valid("segment.batch_size=16", "output.uri=o2"), "a")
    assert run_fingerprint(base, "a") != run_fingerprint(base, "b")  # other weights
    assert run_fingerprint(base, "a") != run_fingerprint(_valid("grid.pred_iou_thresh=0.5"), "a")


def test_documented_default_config_file_equals_the_defaults():
    path = REPO / "jobs" / "configs" / "label.yaml"
    assert load_config(LabelConfig, path) == LabelConfig()
    # Keys, defaults and their documentation come from the dataclasses: the file is generated, not kept by hand.
    assert path.read_text() == defaults_yaml(), "regenerate it with: python -m pipeline.config.document"
    docs = field_docs(GridConfig)
    assert docs["pred_iou_thresh"].startswith("Keep masks whose predicted IoU is strictly above this")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.epochs=0"], "optim.epochs must be at least 1, got 0"),
        (["workers.num_workers=0"], "workers.num_workers must be at least 1"),
        (["val.iou=0"], "val.iou must be in (0, 1]"),
        (["head.out_stride=4"], "head.out_stride must be 8 or 16"),
    ],
)
def test_training_job_rules_name_the_key(overrides, message):
    required = ["output=out", "data.train=t.json", "data.val=v.json", "model.name=mini-l"]
    with pytest.raises(ConfigError) as excinfo:  # ranges fail on load, cross-field rules on validation
        validate_train_config(load_config(TrainJobConfig, None, required + overrides))
    assert message in str(excinfo.value)
    validate_train_config(load_config(TrainJobConfig, None, required))  # the defaults pass


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grid.crop_n_layers=-1", "grid.crop_n_layers must not be negative, got -1"),
        ("autoppn.nms_radius=-0.5", "autoppn.nms_radius must not be negative, got -0.5"),
        ("segment.batch_size=0", "segment.batch_size must be at least 1, got 0"),
        ("input.limit=0", "input.limit must be at least 1, got 0"),
        ("boxes.stability_score_thresh=-0.1", "boxes.stability_score_thresh must be between 0 and 1, got -0.1"),
    ],
)
def test_ranges_declared_on_the_fields_fail_on_load_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(LabelConfig, None, [override])
    assert load_config(LabelConfig, None, ["segment.batch_size=null"]).segment.batch_size is None  # unset is fine


def test_readme_key_table_names_real_keys_with_their_defaults():
    """The README's table of common keys quotes the code: every key exists and every default is the field's (a
    default left to the run, None, may be described in words)."""
    defaults = to_dict(LabelConfig())
    section = (REPO / "README.md").read_text().split("\n## Configuration\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 5
    for row in rows:
        keys_cell, defaults_cell = row.split("|")[1:3]
        keys = re.findall(r"`([a-z_]+\.[a-z_]+)`", keys_cell)
        values = [v.strip().strip("`") for v in defaults_cell.split(",")]
        assert keys and len(values) == len(keys), row
        for key, written in zip(keys, values, strict=True):
            section, name = key.split(".")
            assert name in defaults[section], f"{key} is not a config key"
            actual = defaults[section][name]
            if actual is not None:
                assert written == yaml.safe_dump(actual, default_flow_style=True).split("\n")[0], key
