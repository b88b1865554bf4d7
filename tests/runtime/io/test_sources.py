from pathlib import Path

from runtime.io.sources import expand


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_files_folders_globs_and_cameras(tmp_path):
    image = touch(tmp_path / "a.png")
    video = touch(tmp_path / "clip.MP4")
    folder = tmp_path / "shots"
    touch(folder / "b.jpg"), touch(folder / "notes.txt"), touch(folder / "a.tif")
    touch(tmp_path / "burst" / "c1.png"), touch(tmp_path / "burst" / "c2.png")
    sources, errors = expand([str(image), str(video), str(folder), str(tmp_path / "burst" / "c*.png"), "0"])
    assert errors == []
    assert [(s.kind, s.name) for s in sources] == [
        ("image", "a"), ("video", "clip"), ("image", "a_2"), ("image", "b"), ("image", "c1"), ("image", "c2"),
        ("camera", "camera0"),
    ]  # fmt: skip


def test_what_names_nothing_is_reported_per_argument(tmp_path):
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "only-text" / "readme.txt")
    sources, errors = expand([str(tmp_path / "empty"), str(tmp_path / "only-text"), "missing.png", "*.none"])
    assert sources == []
    assert errors == [
        f"{tmp_path / 'empty'}: folder holds no images or videos",
        f"{tmp_path / 'only-text'}: folder holds no images or videos",
        "missing.png: no such file, folder or camera index",
        "*.none: pattern matches no file",
    ]


def test_a_file_with_an_unknown_suffix_is_tried_as_an_image(tmp_path):
    sources, _ = expand([str(touch(tmp_path / "scan.raw"))])
    assert [(s.kind, s.name) for s in sources] == [("image", "scan")]


def test_names_of_dots_name_no_folder_outside_or_hidden(tmp_path):
    """`...png` has the stem `..`: taken as a result folder's name it would be the output folder's parent."""
    files = [touch(tmp_path / name) for name in ("...png", "..png", ".hidden.png")]
    sources, _ = expand([str(path) for path in files])
    assert [s.name for s in sources] == ["image", "image_2", "hidden"]
