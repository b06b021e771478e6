"""``videoseek ingest``: every input ends in exactly one list of the summary, with a reason when it failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from videoseek.cli.app import app
from videoseek.collections import get_collection
from videoseek.runtime.embedded import embedded_context
from videoseek.settings import Settings


def _invoke(*args: str) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    result = CliRunner().invoke(app, ["ingest", *args, "--json"])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, (result.exit_code, result.output)
    return result.exit_code, json.loads(lines[0])


def test_json_summary_accounts_for_every_input_once(
    embedded: Settings, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copyfile(toy_videos[0]["path"], folder / "a.mp4")
    shutil.copyfile(toy_videos[1]["path"], folder / "sub" / "b.MKV")  # suffix case does not matter
    shutil.copyfile(toy_videos[0]["path"], folder / "sub" / "a-again.mp4")  # same bytes as a.mp4
    (folder / "notes.txt").write_text("not a video, not picked from a folder")
    (folder / "broken.webm").write_bytes(b"")
    given_twice = toy_videos[2]["path"]
    code, summary = _invoke(
        "--collection",
        "films",
        str(folder),
        str(given_twice),
        str(given_twice),
        str(tmp_path / "missing.mp4"),
    )
    assert code == 1  # something failed
    files = {k: sorted(Path(i["file"]).name for i in v) for k, v in summary.items()}
    assert files == {
        "indexed": ["00002.mp4", "a.mp4", "b.MKV"],
        "skipped": ["a-again.mp4"],
        "failed": ["broken.webm", "missing.mp4"],
    }
    reasons = {Path(i["file"]).name: i["reason"] for i in summary["failed"]}
    assert "empty" in reasons["broken.webm"] and "no such file" in reasons["missing.mp4"]
    assert all(i["clips"] == 2 for i in summary["indexed"])
    context = embedded_context(embedded)
    assert context.store.count("films") == 6  # 3 videos x 2 clips, the duplicate added nothing
    context.close()


def test_ingesting_again_skips_everything(embedded: Settings, toy_videos: list[dict[str, Any]]) -> None:
    paths = [str(r["path"]) for r in toy_videos[:2]]
    code, first = _invoke("--collection", "films", *paths)
    assert code == 0 and len(first["indexed"]) == 2
    code, again = _invoke("--collection", "films", *paths)
    assert code == 0 and again["indexed"] == [] and again["failed"] == []
    assert [i["video_id"] for i in again["skipped"]] == [i["video_id"] for i in first["indexed"]]


def test_bad_metadata_is_a_clear_error(embedded: Settings, toy_videos: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(
        app, ["ingest", "--collection", "films", str(toy_videos[0]["path"]), "--metadata", "[1, 2]"]
    )
    assert result.exit_code == 2 and "JSON object" in result.output


def test_directory_ingest_picks_raw_elementary_streams(tmp_path: Path) -> None:
    """Camera and encoder dumps (.264/.h264/.265/.h265/.hevc) are videos too; a folder contributes them."""
    from videoseek.cli.ingest_summary import collect_inputs
    from videoseek.video.probe import RAW_STREAM_DEMUXERS

    names = ["cam.264", "enc.H264", "a.265", "b.h265", "c.hevc", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"\x00\x00\x00\x01")
    picked = {Path(entry.file).name for entry in collect_inputs([tmp_path])}
    assert picked == set(names) - {"notes.txt"}
    assert {Path(name).suffix.lower() for name in picked} == set(RAW_STREAM_DEMUXERS)


@pytest.mark.parametrize(
    ("metadata", "rule"),
    [
        ('{"x": ' + "[" * 20_000 + "]" * 20_000 + "}", "depth"),
        ('{"x": NaN}', "number"),
        ('{"n": ' + "9" * 4000 + "}", "integer"),
    ],
    ids=["20000 levels", "NaN", "4000-digit integer"],
)
def test_metadata_the_stores_could_not_read_back_is_refused_before_anything_is_ingested(
    embedded: Settings, toy_videos: list[dict[str, Any]], metadata: str, rule: str
) -> None:
    result = CliRunner().invoke(
        app, ["ingest", "--collection", "films", str(toy_videos[0]["path"]), "--metadata", metadata]
    )
    assert result.exit_code == 2, result.output
    assert f"--metadata breaks the {rule} rule: metadata." in result.output
    assert "Traceback" not in result.output
    context = embedded_context(embedded)
    assert get_collection(context.store, "films") is None  # refused before the collection was even created
    context.close()


def test_captions_from_a_training_manifest_become_pairs_of_the_files_they_name(
    embedded: Settings, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    from training.data import load_dataset
    from videoseek.pairs import iter_pairs

    folder = tmp_path / "clips"
    folder.mkdir()
    first, second = (shutil.copyfile(r["path"], folder / f"{i}.mp4") for i, r in enumerate(toy_videos[:2]))
    manifest = tmp_path / "captions.jsonl"
    lines = [  # paths relative to the manifest, as training reads them
        {"video": "clips/0.mp4", "caption": toy_videos[0]["caption"], "start_s": 2, "end_s": 30},
        {"video": "clips/1.mp4", "caption": "  the second   video "},
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert len(load_dataset(manifest)) == 2  # the same file trains: `videoseek train --data captions.jsonl`

    code, summary = _invoke("--collection", "films", "--captions", str(manifest), str(first), str(second))
    assert code == 0 and len(summary["indexed"]) == 2, summary
    ids = {Path(i["file"]).name: i["video_id"] for i in summary["indexed"]}
    context = embedded_context(embedded)
    pairs = list(iter_pairs(context.pairs, "films"))
    context.close()
    assert sorted((p.video_id, p.text, p.start_s, p.end_s, p.source) for p in pairs) == sorted(
        [
            (ids["0.mp4"], toy_videos[0]["caption"], 2.0, 12.0, "cli"),  # cut to the 12 s video
            (ids["1.mp4"], "the second video", None, None, "cli"),
        ]
    )
    listed = CliRunner().invoke(app, ["pairs", "list", "-c", "films", "--json", "--video", ids["1.mp4"]])
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["text"] for line in listed.stdout.splitlines()] == ["the second video"]
    table = CliRunner().invoke(app, ["pairs", "list", "-c", "films", "--kind", "caption"])
    assert table.stdout.splitlines()[-1] == "2 caption, 0 feedback_positive, 0 feedback_negative, 0 subtitle"
    assert "2.00-12.00" in table.stdout and "start-end" in table.stdout
    refused = CliRunner().invoke(app, ["pairs", "list", "-c", "films", "--kind", "liked"])
    assert refused.exit_code == 2 and "unknown pair kind 'liked'" in refused.output


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ({"video": "other.mp4", "caption": "t"}, "line 1: 'other.mp4' is not one of the files given"),
        ({"video": "a.mp4", "caption": ""}, "line 1: caption text is empty"),
        ({"video": "a.mp4", "caption": "t", "start_s": 3, "end_s": 1}, "line 1: end_s (1) must be after"),
        ({"caption": "t"}, 'line 1: missing "video"'),
    ],
)
def test_a_bad_captions_line_stops_ingest_before_anything_is_stored(
    embedded: Settings, toy_videos: list[dict[str, Any]], tmp_path: Path, line: dict[str, Any], said: str
) -> None:
    video = shutil.copyfile(toy_videos[0]["path"], tmp_path / "a.mp4")
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text(json.dumps(line) + "\n")
    result = CliRunner().invoke(
        app, ["ingest", "--collection", "films", "--captions", str(manifest), str(video)]
    )
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
    context = embedded_context(embedded)
    assert get_collection(context.store, "films") is None  # nothing was even created
    context.close()


def test_a_captions_line_names_a_file_by_its_path_from_the_manifest_or_by_a_name_no_other_file_has(
    tmp_path: Path,
) -> None:
    from videoseek.cli.ingest_captions import CaptionFileError, captions_by_file
    from videoseek.cli.ingest_summary import Entry

    for name in ("a/x.mp4", "b/x.mp4", "b/y.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"v")
    entries = [Entry(str(tmp_path / n), tmp_path / n) for n in ("a/x.mp4", "b/x.mp4", "b/y.mp4")]
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text(
        json.dumps({"video": "a/x.mp4", "caption": "by path"})
        + "\n"
        + json.dumps({"video": "y.mp4", "caption": "by name", "start_s": 1})
        + "\n\n"
    )
    found = captions_by_file(manifest, entries)
    assert {
        p.relative_to(tmp_path).as_posix(): [(d.text, d.start_s) for d in v] for p, v in found.items()
    } == {
        "a/x.mp4": [("by path", None)],
        "b/y.mp4": [("by name", 1.0)],
    }
    manifest.write_text(json.dumps({"video": "x.mp4", "caption": "which one?"}) + "\n")
    with pytest.raises(CaptionFileError, match="names 2 of the files given"):
        captions_by_file(manifest, entries)
    manifest.write_text("{not json\n")
    with pytest.raises(CaptionFileError, match="line 1: not valid JSON"):
        captions_by_file(manifest, entries)
