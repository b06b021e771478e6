"""Datasets: the captions.jsonl manifest, MSR-VTT as distributed, and what happens to bad entries."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from training_helpers import write_manifest

from training.data import DataError, load_dataset


def _video(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" * 16)  # contents are the frame cache's business, not the reader's
    return path


def test_manifest_paths_are_relative_to_the_manifest_and_windows_are_read(tmp_path: Path) -> None:
    _video(tmp_path / "data" / "videos" / "a.mp4")
    manifest = write_manifest(
        tmp_path / "data" / "captions.jsonl",
        [
            {"video": "videos/a.mp4", "caption": "  a red ball  "},
            "",
            {"video": "videos/a.mp4", "caption": "the second half", "start_s": 2, "end_s": 4.5},
        ],
    )
    dataset = load_dataset(manifest)
    assert [r.caption for r in dataset.records] == ["a red ball", "the second half"]
    assert dataset.records[0].video == (tmp_path / "data" / "videos" / "a.mp4").resolve()
    assert (dataset.records[1].start_s, dataset.records[1].end_s) == (2.0, 4.5)
    clips, owner = dataset.clips()
    assert len(clips) == 2 and owner == [0, 1]  # a window is a clip of its own


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"video": "missing.mp4", "caption": "x"}, "not found"),
        ({"video": "empty.mp4", "caption": "x"}, "is empty"),
        ({"video": "ok.mp4", "caption": "   "}, "empty caption"),
        ({"video": "ok.mp4"}, 'missing "caption"'),
        ({"caption": "x"}, 'missing "video"'),
        ({"video": "ok.mp4", "caption": "x", "start_s": 3, "end_s": 1}, "must be after"),
        ({"video": "ok.mp4", "caption": "x", "start_s": "soon"}, "number of seconds"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_entry_stops_the_run_with_its_line_and_the_fix(
    tmp_path: Path, row: object, reason: str
) -> None:
    _video(tmp_path / "ok.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    manifest = write_manifest(tmp_path / "captions.jsonl", [{"video": "ok.mp4", "caption": "fine"}, row])  # type: ignore[list-item]
    with pytest.raises(DataError, match=rf"captions.jsonl line 2: .*{reason}.*--on-bad skip"):
        load_dataset(manifest, on_bad="error")


def test_skip_drops_bad_entries_and_counts_them(tmp_path: Path) -> None:
    _video(tmp_path / "ok.mp4")
    manifest = write_manifest(
        tmp_path / "captions.jsonl",
        [
            {"video": "ok.mp4", "caption": "fine"},
            {"video": "gone.mp4", "caption": "x"},
            {"video": "ok.mp4", "caption": ""},
            "[1, 2]",
            {"video": "ok.mp4", "caption": "also fine"},
        ],
    )
    dataset = load_dataset(manifest, on_bad="skip")
    assert [r.caption for r in dataset.records] == ["fine", "also fine"]
    assert [b.where for b in dataset.skipped] == [f"captions.jsonl line {n}" for n in (2, 3, 4)]
    assert dataset.summary()["skipped"] == 3


def test_a_manifest_with_nothing_usable_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "captions.jsonl", [{"video": "gone.mp4", "caption": "x"}])
    with pytest.raises(DataError, match=r"no usable captioned clips \(1 skipped"):
        load_dataset(manifest, on_bad="skip")


def test_a_file_that_is_not_a_text_manifest_is_a_data_error_not_a_crash(tmp_path: Path) -> None:
    binary = tmp_path / "video.mp4"
    binary.write_bytes(b"\x00\x00\x00\x20ftypisom\xd0\xff" * 64)
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_dataset(binary)
    with pytest.raises(DataError, match="not a regular file"):
        load_dataset(Path("/dev/zero"))  # would be read forever
    folder = tmp_path / "captions.jsonl"
    folder.mkdir()  # a folder is read as MSR-VTT's, and this one is not
    with pytest.raises(DataError, match=r"MSRVTT_data\.json not found"):
        load_dataset(folder)


def _msrvtt(root: Path) -> Path:
    sentences = [
        {"video_id": f"video{v}", "caption": f"caption {c} of video {v}", "sen_id": 10 * v + c}
        for v in range(4)
        for c in range(3)
    ]
    (root / "MSRVTT_data.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "MSRVTT_data.json").write_text(json.dumps({"videos": [], "sentences": sentences}))
    with (root / "MSRVTT_train.9k.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["video_id"], ["video2"], ["video0"]])
    with (root / "MSRVTT_JSFUSION_test.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["", "key", "vid_key", "video_id", "sentence"], [0, "k", "msr3", "video3", "a test sentence"]]
        )
    for v in range(4):
        _video(root / "videos" / "all" / f"video{v}.mp4")
    return root / "MSRVTT_data.json"


def test_msrvtt_train_split_has_every_caption_of_its_videos_in_split_order(tmp_path: Path) -> None:
    dataset = load_dataset(_msrvtt(tmp_path), split="train_9k")
    assert [r.caption for r in dataset.records] == [
        f"caption {c} of video {v}" for v in (2, 0) for c in range(3)
    ]
    assert dataset.records[0].video == (tmp_path / "videos" / "all" / "video2.mp4").resolve()
    assert len(dataset.clips()[0]) == 2


def test_msrvtt_test_1k_a_uses_the_split_files_sentences(tmp_path: Path) -> None:
    dataset = load_dataset(_msrvtt(tmp_path).parent, split="test_1k-A")  # the folder works too
    assert [(r.video.name, r.caption) for r in dataset.records] == [("video3.mp4", "a test sentence")]


def test_msrvtt_problems_name_the_missing_piece(tmp_path: Path) -> None:
    data = _msrvtt(tmp_path)
    with pytest.raises(DataError, match="unknown MSR-VTT split 'val'"):
        load_dataset(data, split="val")
    (tmp_path / "MSRVTT_train.9k.csv").unlink()
    with pytest.raises(DataError, match="no split file for train_9k"):
        load_dataset(data, split="train_9k")
    (tmp_path / "videos" / "all" / "video3.mp4").unlink()
    with pytest.raises(DataError, match=r"video3\.mp4 not found"):
        load_dataset(data, split="test_1k-A")
