"""Input listing from local folders, S3 prefixes on moto's server, and .txt / .csv / .parquet manifests."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config.sections import StorageConfig
from pipeline.io.listing import list_images
from pipeline.io.storage import write_bytes
from pipeline.schema import IMAGE_ID, IMAGE_URI

LOCAL = StorageConfig()
TREE = {
    "b.PNG": b"png",
    "a.jpg": b"jpg",
    "sub/dir/img 1.JPG": b"jpg",
    "sub/dir/c.webp": b"webp",
    "sub/x.TiFf": b"tiff",
    "sub/photo.jpeg": b"jpeg",
    "notes.txt": b"not an image",
    "sub/dir/meta.json": b"{}",
    "sub/jpg": b"no extension",
}
IMAGE_IDS = ["a.jpg", "b.PNG", "sub/dir/c.webp", "sub/dir/img 1.JPG", "sub/photo.jpeg", "sub/x.TiFf"]


def _write_tree(base: str, storage: StorageConfig, tree: dict[str, bytes] = TREE) -> None:
    for name, data in tree.items():
        write_bytes(f"{base}/{name}", data, storage)


def _rows(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table.column(IMAGE_ID).to_pylist(), table.column(IMAGE_URI).to_pylist(), strict=True))


def _parquet(column: str, values: list[str]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({column: values, "label": list(range(len(values)))}), sink)
    return sink.getvalue()


def test_local_folder_lists_images_recursively_with_relative_ids(tmp_path: Path) -> None:
    _write_tree(str(tmp_path / "in"), LOCAL)
    table = list_images(str(tmp_path / "in"), LOCAL)
    assert table.schema == pa.schema([(IMAGE_ID, pa.string()), (IMAGE_URI, pa.string())])
    assert _rows(table) == [(image_id, str(tmp_path / "in" / image_id)) for image_id in IMAGE_IDS]
    assert _rows(list_images((tmp_path / "in").as_uri() + "/", LOCAL)) == _rows(table)
    only_png = list_images(str(tmp_path / "in"), LOCAL, extensions=("png",))
    assert only_png.column(IMAGE_ID).to_pylist() == ["b.PNG"]


def test_the_same_tree_on_s3_gives_the_same_ids(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    _write_tree(str(tmp_path / "in"), LOCAL)
    _write_tree(f"s3://{s3_bucket}/data/in", storage)
    write_bytes(f"s3://{s3_bucket}/data/in-other/z.jpg", b"sibling prefix", storage)
    local = list_images(str(tmp_path / "in"), LOCAL)
    remote = list_images(f"s3://{s3_bucket}/data/in", storage)
    assert remote.column(IMAGE_ID).to_pylist() == local.column(IMAGE_ID).to_pylist() == IMAGE_IDS
    assert remote.column(IMAGE_URI).to_pylist() == [f"s3://{s3_bucket}/data/in/{i}" for i in IMAGE_IDS]
    assert _rows(list_images(f"s3://{s3_bucket}/data/in/", storage)) == _rows(remote)
    whole_bucket = list_images(f"s3://{s3_bucket}", storage).column(IMAGE_ID).to_pylist()
    assert whole_bucket == sorted([f"data/in/{i}" for i in IMAGE_IDS] + ["data/in-other/z.jpg"])


def test_txt_manifest_resolves_relative_entries_and_drops_duplicates(
    tmp_path: Path, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [
        "# my images",
        "",
        "  imgs/b.jpg  ",
        "../elsewhere/a.png",
        str(tmp_path / "abs" / "c.jpg"),
        f"s3://{s3_bucket}/k/d.jpg",
        "imgs/b.jpg",
        "notes.gif",
    ]
    manifest = tmp_path / "lists" / "manifest.txt"
    write_bytes(str(manifest), "\n".join(lines).encode(), LOCAL)
    with caplog.at_level(logging.WARNING, logger="pipeline.io.listing"):
        table = list_images(str(manifest), LOCAL)
    assert _rows(table) == [
        ("../elsewhere/a.png", str(tmp_path / "elsewhere" / "a.png")),
        (str(tmp_path / "abs" / "c.jpg"), str(tmp_path / "abs" / "c.jpg")),
        ("imgs/b.jpg", str(tmp_path / "lists" / "imgs" / "b.jpg")),
        ("notes.gif", str(tmp_path / "lists" / "notes.gif")),
        (f"s3://{s3_bucket}/k/d.jpg", f"s3://{s3_bucket}/k/d.jpg"),
    ]
    assert "dropped 1 duplicate entries" in caplog.text


def test_csv_manifest_column_rules(tmp_path: Path) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("label,image_uri,path\ncat,x/1.jpg,ignored\ndog,x/2.jpg,ignored\n")
    assert list_images(str(csv_path), LOCAL).column(IMAGE_URI).to_pylist() == [
        str(tmp_path / "x" / "1.jpg"),
        str(tmp_path / "x" / "2.jpg"),
    ]
    assert list_images(str(csv_path), LOCAL, manifest_column="path").column(IMAGE_ID).to_pylist() == ["ignored"]
    with pytest.raises(ValueError) as info:
        list_images(str(csv_path), LOCAL, manifest_column="file")
    assert str(info.value) == f"manifest {csv_path} has no column 'file' (columns found: label, image_uri, path)"
    single = tmp_path / "single.csv"
    single.write_text("filename\na.jpg\n")
    assert list_images(str(single), LOCAL).column(IMAGE_ID).to_pylist() == ["a.jpg"]
    ambiguous = tmp_path / "ambiguous.csv"
    ambiguous.write_text("file,label\na.jpg,cat\n")
    with pytest.raises(ValueError, match="has no image_uri/uri/path/url column .*set input.manifest_column"):
        list_images(str(ambiguous), LOCAL)


def test_parquet_manifest_on_s3_resolves_against_its_prefix(s3_endpoint: str, s3_bucket: str) -> None:
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    uri = f"s3://{s3_bucket}/lists/run.parquet"
    write_bytes(uri, _parquet("url", ["imgs/b.jpg", "./a.jpg", "/local/c.jpg"]), storage)
    assert _rows(list_images(uri, storage)) == [
        ("./a.jpg", f"s3://{s3_bucket}/lists/a.jpg"),
        ("/local/c.jpg", "/local/c.jpg"),
        ("imgs/b.jpg", f"s3://{s3_bucket}/lists/imgs/b.jpg"),
    ]
    write_bytes(uri, _parquet("url", ["../../outside.jpg"]), storage)
    with pytest.raises(ValueError, match="points outside bucket"):
        list_images(uri, storage)


def test_parquet_manifest_column_must_hold_strings(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"uri": [1, 2]}), path)
    with pytest.raises(ValueError, match="column 'uri' holds int64, not strings"):
        list_images(str(path), LOCAL)
    pq.write_table(pa.table({"a": ["x"], "b": ["y"]}), path)
    with pytest.raises(ValueError, match=r"\(columns found: a, b\)"):
        list_images(str(path), LOCAL)


def test_folder_without_images_says_what_was_looked_for(tmp_path: Path) -> None:
    _write_tree(str(tmp_path / "docs"), LOCAL, {"notes.txt": b"x", "a/b.json": b"{}"})
    with pytest.raises(ValueError) as info:
        list_images(str(tmp_path / "docs"), LOCAL)
    message = str(info.value)
    assert message.startswith(f"no images in {tmp_path / 'docs'} (looked for .jpg, .jpeg, .png")
    assert "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        list_images(str(tmp_path / "empty"), LOCAL)


def test_missing_inputs_fail_before_any_work(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    for uri in (
        str(tmp_path / "nope"),
        f"s3://{s3_bucket}/nope",
        str(tmp_path / "nope.csv"),
        f"s3://{s3_bucket}/a.txt",
    ):
        with pytest.raises(ValueError, match=f"^input {uri} does not exist$"):
            list_images(uri, storage)
    image = tmp_path / "one.jpg"
    image.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file: give a folder"):
        list_images(str(image), storage)


def test_bad_manifests(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("a.jpg\ngs://bucket/b.jpg\n")
    with pytest.raises(ValueError, match=f"manifest {manifest}: bad entry 'gs://bucket/b.jpg': unsupported URI"):
        list_images(str(manifest), LOCAL)
    manifest.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="lists no images"):
        list_images(str(manifest), LOCAL)
    manifest.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        list_images(str(manifest), LOCAL)
    broken = tmp_path / "m.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="is not a Parquet file"):
        list_images(str(broken), LOCAL)
