"""Tiny real videos generated with PyAV for the decoding tests (helpers; fixtures are in conftest.py).

Every generated frame carries its own index: the top half is a flat grey of level ``16 * (i % 16)``, which
survives lossy codecs well enough to tell which source frame a sampled frame came from. The bottom half is
red on the left and blue on the right, with a green block in the top-left corner, so orientation is visible.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

W, H = 64, 48
LEVEL_STEP = 16


def frame_pattern(i: int, width: int = W, height: int = H) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = LEVEL_STEP * (i % 16)
    image[height // 2 :, : width // 2] = (230, 20, 20)
    image[height // 2 :, width // 2 :] = (20, 20, 230)
    image[: height // 4, : width // 4] = (20, 230, 20)
    return image


def frame_index_of(frame: np.ndarray) -> int:
    """The source index (mod 16) encoded by :func:`frame_pattern`, read from the grey top-right area."""
    h, w = frame.shape[:2]
    level = float(frame[h // 8 : h * 3 // 8, w // 2 : w * 7 // 8].mean())
    return round(level / LEVEL_STEP) % 16


def write_video(
    path: Path,
    codec: str = "libx264",
    n: int = 30,
    rate: int = 10,
    size: tuple[int, int] = (W, H),
    pix_fmt: str = "yuv420p",
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    container_options: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
    audio: bool = False,
    fmt: str | None = None,
) -> Path:
    """Encode ``n`` pattern frames; ``times`` (seconds) gives explicit, possibly irregular, timestamps."""
    width, height = size
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate, options=codec_options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if times is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = out.add_stream("aac", rate=8000) if audio else None
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, width, height), format="rgb24")
            if times is not None:
                frame.pts = round(times[i] * 1000)
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio_stream is not None:
            _write_silence(out, audio_stream, seconds=n / rate)
    return path


def _write_silence(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    samples = 1024
    for k in range(int(seconds * 8000) // samples + 1):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        frame.pts = k * samples
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        _write_silence(out, stream, seconds)
    return path


def patch_gif_screen(src: Path, dst: Path, width: int, height: int) -> Path:
    """Copy a GIF claiming a logical screen of ``width`` x ``height`` (bytes 6-9 of the header)."""
    data = bytearray(src.read_bytes())
    data[6:10] = struct.pack("<HH", width, height)
    dst.write_bytes(bytes(data))
    return dst


def patch_mpeg1_sequence_header(src: Path, dst: Path, width: int, height: int) -> Path:
    """Copy an MPEG-1 file whose sequence header claims ``width`` x ``height`` (12 bits each)."""
    data = bytearray(src.read_bytes())
    at = data.find(b"\x00\x00\x01\xb3")
    assert at >= 0, "no MPEG-1 sequence header"
    data[at + 4 : at + 7] = bytes([width >> 4, ((width & 15) << 4) | (height >> 8), height & 255])
    dst.write_bytes(bytes(data))
    return dst


def remux_with_edit_list(src: Path, dst: Path, cut_s: float) -> Path:
    """Copy ``src``'s video packets into an MP4 whose edit list starts playback ``cut_s`` into the media.

    What a stream copy cut at a non-keyframe gives (``ffmpeg -ss 1.5 -c copy``): the packets from the GOP
    start stay in the file (they are needed to decode the first shown frame) with negative times, and the
    muxer writes an edit list with a non-zero media time so players start at the cut.
    """
    with av.open(str(src)) as source, av.open(str(dst), "w", format="mp4") as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        assert video.time_base is not None
        offset = round(cut_s / video.time_base)
        for packet in source.demux(video):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            assert packet.pts is not None
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = stream
            out.mux(packet)
    return dst


def mp4_edit_media_time(path: Path) -> tuple[int, int]:
    """(media time of the first edit, the track's timescale) read from the first ``elst``/``mdhd`` boxes."""
    data = path.read_bytes()
    elst = data.find(b"elst")
    assert elst >= 0, "no edit list"
    version = data[elst + 4]
    entry = elst + 12  # after type, version + flags, entry count
    media_time = (
        struct.unpack(">q", data[entry + 8 : entry + 16])[0]
        if version == 1
        else struct.unpack(">i", data[entry + 4 : entry + 8])[0]
    )
    mdhd = data.find(b"mdhd")
    offset = mdhd + 4 + 4 + (16 if data[mdhd + 4] == 1 else 8)  # skip version/flags and the two dates
    return media_time, struct.unpack(">I", data[offset : offset + 4])[0]


def cut_transport_stream_head(src: Path, dst: Path, fraction: float) -> Path:
    """Copy an MPEG-TS without its first ``fraction`` of bytes, cut on a 188-byte packet boundary: the
    stream then starts mid-GOP, as a capture joined late or a file whose beginning was lost does."""
    data = src.read_bytes()
    cut = int(len(data) * fraction) // 188 * 188
    dst.write_bytes(data[cut:])
    return dst


# Common Encryption test key and key id (16 bytes each, hex): FFmpeg's mov muxer encrypts with them, its demuxer
# decrypts with the key given as ``decryption_key``.
CENC_KEY = "00112233445566778899aabbccddeeff"
CENC_KID = "a7e61c373e219033c21091fa607bf3b8"
QUIET_X265 = {"x265-params": "log-level=error"}


def write_encrypted_mp4(path: Path, fragmented: bool = False, **kwargs: object) -> Path:
    """An MP4 whose video track FFmpeg's muxer encrypts with Common Encryption ('cenc', AES-CTR, subsample
    encryption of the NAL units), as a DRM packager would; ``fragmented`` writes moof/mdat fragments (DASH)."""
    options = {"encryption_scheme": "cenc-aes-ctr", "encryption_key": CENC_KEY, "encryption_kid": CENC_KID}
    if fragmented:
        options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
    return write_video(path, container_options=options, **kwargs)  # type: ignore[arg-type]


def with_scheme_type(src: Path, dst: Path, scheme: bytes) -> Path:
    """Copy an encrypted MP4 whose ``schm`` box names another scheme (e.g. b"cbcs", Apple's and Widevine's)."""
    data = bytearray(src.read_bytes())
    at = data.find(b"schm")
    assert at >= 0 and len(scheme) == 4, "no schm box"
    data[at + 8 : at + 12] = scheme  # after the type and version/flags
    dst.write_bytes(bytes(data))
    return dst


def with_sample_entry(src: Path, dst: Path, old: bytes, new: bytes) -> Path:
    """Copy an MP4 whose first ``old`` sample entry is renamed ``new`` (e.g. encv -> avc1: the headers then no
    longer declare the encryption, while the ``sinf`` box inside still makes FFmpeg mark every packet)."""
    data = src.read_bytes()
    at = data.find(old)
    assert at >= 0, f"no {old!r} box"
    dst.write_bytes(data[:at] + new + data[at + len(new) :])
    return dst


def with_pssh_box(src: Path, dst: Path) -> Path:
    """Copy an MP4 (moov last, as written without faststart) with a Widevine ``pssh`` box appended to its moov:
    DRM system data next to clear tracks, as packagers sometimes leave it."""
    data = bytearray(src.read_bytes())
    at = data.rfind(b"moov") - 4
    (size,) = struct.unpack(">I", data[at : at + 4])
    assert at + size == len(data), "moov is not the last box"
    system_id = bytes.fromhex("edef8ba979d64acea3c827dcd51d21ed")
    init_data = b"\x12\x10" + bytes.fromhex(CENC_KID)
    payload = b"\x00\x00\x00\x00" + system_id + struct.pack(">I", len(init_data)) + init_data
    pssh = struct.pack(">I4s", 8 + len(payload), b"pssh") + payload
    data[at : at + 4] = struct.pack(">I", size + len(pssh))
    dst.write_bytes(bytes(data) + pssh)
    return dst


def _ebml(element_id: int, payload: bytes) -> bytes:
    assert len(payload) < 127
    return (
        element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
        + bytes([0x80 | len(payload)])
        + payload
    )


def write_matroska_with_encrypted_track(path: Path, n: int = 30) -> Path:
    """A Matroska file whose video track declares WebM encryption (ContentEncodings/ContentEncryption, AES,
    with a key id), written in place of the track's Name element so no size or offset in the file changes."""
    placeholder = "p" * 60
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.metadata["title"] = placeholder
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = path.read_bytes()
    name = _ebml(0x536E, placeholder.encode())
    at = data.find(name)
    assert at >= 0, "no track Name element"
    aes = _ebml(0x47E7, _ebml(0x47E8, b"\x01"))  # AESSettingsCipherMode: CTR
    encryption = _ebml(0x5035, _ebml(0x47E1, b"\x05") + _ebml(0x47E2, bytes.fromhex(CENC_KID)) + aes)
    encoding = _ebml(
        0x6240, _ebml(0x5032, b"\x01") + _ebml(0x5033, b"\x01") + encryption
    )  # frames, encryption
    encodings = _ebml(0x6D80, encoding)
    void = _ebml(0xEC, bytes(len(name) - len(encodings) - 2))
    assert len(encodings) + len(void) == len(name)
    path.write_bytes(data[:at] + encodings + void + data[at + len(name) :])
    return path


def with_mvc_extension_units(src: Path, dst: Path) -> Path:
    """Copy a raw H.264 stream with a coded slice extension NAL unit (type 20, what the second view of an MVC
    3D stream is made of) after each slice. FFmpeg decodes the base view; its content probe gives up on it."""
    data = src.read_bytes()
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", data)]
    out = bytearray()
    extension = b"\x00\x00\x00\x01\x74" + bytes(
        range(0x10, 0x40)
    )  # nal_ref_idc 3, type 20; no start code inside
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        if end < len(data) and data[end - 1] == 0:
            end -= 1  # a four-byte start code: its leading zero belongs to the next unit
        begin = start if i == 0 or data[start - 1] != 0 else start - 1
        unit = data[begin:end]
        out += unit
        if data[start + 3] & 0x1F in (1, 5):  # a coded slice (non-IDR or IDR)
            out += extension
    dst.write_bytes(bytes(out))
    return dst


def remux_elementary_stream(src: Path, dst: Path, fmt: str) -> Path:
    """Copy ``src``'s video as a raw Annex-B stream (``fmt`` 'h264' or 'hevc'), as ``ffmpeg -c copy out.h264``
    does: length-prefixed MP4 samples get start codes and their parameter sets in front of keyframes."""
    with av.open(str(src)) as source, av.open(str(dst), "w", format=fmt) as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        to_annexb = None
        if source.format.name.startswith("mov"):
            to_annexb = av.BitStreamFilterContext(f"{fmt}_mp4toannexb", video, stream)
        for packet in source.demux(video):
            if packet.size == 0:
                continue
            for converted in to_annexb.filter(packet) if to_annexb else [packet]:
                converted.stream = stream
                out.mux(converted)
    return dst


def mux_subtitles(video: Path, subtitles: Sequence[Path], dst: Path) -> Path:
    """``video``'s streams plus one subtitle track per ``.srt``/``.vtt``/``.ass`` file, remuxed into Matroska
    (as ``ffmpeg -i video -i subs.srt -c copy out.mkv``): FFmpeg's demuxers read the files as subtitle streams."""
    with av.open(str(video)) as source, av.open(str(dst), "w", format="matroska") as out:
        streams = {
            s.index: out.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")
        }
        inputs = [av.open(str(path)) for path in subtitles]
        try:
            tracks = [(i, out.add_stream_from_template(i.streams.subtitles[0])) for i in inputs]
            for packet in source.demux():
                if packet.size and packet.stream.index in streams:
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
            for sub_input, track in tracks:
                for packet in sub_input.demux(sub_input.streams.subtitles[0]):
                    if packet.size:
                        packet.stream = track
                        out.mux(packet)
        finally:
            for opened in inputs:
                opened.close()
    return dst
