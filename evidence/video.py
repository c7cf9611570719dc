"""Video frames with PyAV: keyframes plus a fixed sampling rate, each hashed like a photo."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from evidence.decode import MAX_VIDEO_PIXELS, decode_slot
from evidence.errors import CorruptMedia
from evidence.hashing import ImageHashes, hash_grey, working_grey

MAX_DURATION_S = 600  # field videos are short clips; longer uploads are refused at intake


@dataclass
class FrameHash:
    """One sampled frame: its time and hashes."""

    t: float
    hashes: ImageHashes


def _open(source: bytes | Path):
    import av  # lazy: PyAV (FFmpeg bindings) loads only when a video arrives; photo-only processes never pay

    try:
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except (av.error.FFmpegError, ValueError):
        raise CorruptMedia("The video cannot be read.")


def probe(source: bytes | Path) -> tuple[int | None, int | None, float | None]:
    """Width, height and duration of a video, refusing unreadable or over-long ones."""
    container = _open(source)
    try:
        if not container.streams.video:
            raise CorruptMedia("The file has no video stream.")
        stream = container.streams.video[0]
        duration = float(container.duration / 1_000_000) if container.duration else None
        if duration and duration > MAX_DURATION_S:
            raise CorruptMedia(f"Videos may be at most {MAX_DURATION_S} s long.", code="video_too_long")
        width, height = stream.codec_context.width, stream.codec_context.height
        _within_limit(width or 0, height or 0)
        return width, height, duration
    finally:
        container.close()


def _within_limit(width: int, height: int) -> None:
    if width * height > MAX_VIDEO_PIXELS:
        raise CorruptMedia(f"The video is {width}×{height}; videos may be at most 4K (4096×2160 pixels).",
                           code="video_too_large")


def hash_video(data: bytes, *, fps: float = 1.0, max_frames: int = 60) -> list[FrameHash]:
    """Hash keyframes and one frame every 1/fps seconds (at most ``max_frames``)."""
    import av  # lazy: as in _open

    container = _open(data)
    frames: list[FrameHash] = []
    next_t = 0.0
    try:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            if frame.key_frame or t >= next_t:
                _within_limit(frame.width, frame.height)  # each sampled frame: a stream may grow past what probe read
                with decode_slot() as slot:  # its RGB copy is the size of the frame: a decode like a photo's
                    slot.pixels = frame.width * frame.height
                    grey = working_grey(frame.to_image())
                frames.append(FrameHash(round(t, 3), hash_grey(grey)))
                next_t = t + 1.0 / fps
            if len(frames) >= max_frames:
                break
    except av.error.FFmpegError:
        if not frames:
            raise CorruptMedia("The video cannot be decoded.")
    finally:
        container.close()
    if not frames:
        raise CorruptMedia("No frame could be decoded.")
    return frames
