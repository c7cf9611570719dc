"""Generated evidence photos: a unique 'scene' per visit, and what re-users do to old ones. Pure.

A scene is a shop-front-like composition: a lighting gradient, a few large shapes (signs, shelves,
doors) in random colours, smaller clutter and sensor noise, so every visit hashes far from every
other (see tests: two scenes never match under evidence.match) while a re-used, transformed copy
still does.
"""
from __future__ import annotations

import io
import random
from datetime import datetime

import numpy as np
from PIL import Image, ImageDraw

from sim import transforms

SIZE = (480, 360)

# What photo re-users do before uploading an old picture again (cropping ~5 % a side and phone screenshots are
# the re-uses most often missed before the chrome-stripped and crop-tolerant regions).
REUSE_TRANSFORMS = ("none", "wechat", "crop_centre", "crop_side", "watermark_band", "screenshot", "mirror", "resize",
                    "crop5", "screenshot_letterbox", "screenshot_statusbar", "screenshot_rounded")
# Phones the simulated workers carry (make, model); each worker's has its own serial number.
CAMERAS = (("Xiaomi", "Redmi Note 12"), ("HUAWEI", "nova 11"), ("OPPO", "Reno10"), ("vivo", "S17"),
           ("Apple", "iPhone 13"), ("HONOR", "X50"))


def scene(seed: int, size: tuple[int, int] = SIZE, sensor_noise: bool = True) -> Image.Image:
    """A unique textured scene for one visit (with that exposure's sensor noise unless ``sensor_noise`` is off:
    a place photographed again and again gets each exposure's own noise from transforms.reshoot)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = nrng.uniform(30, 220, 3), nrng.uniform(30, 220, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = ((x / w - 0.5) * np.cos(angle) + (y / h - 0.5) * np.sin(angle) + 0.75) / 1.5
    base = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(6, 10)):  # big blocks: signboards, doors, shelves
        x0, y0 = rng.uniform(-0.1, 0.9) * w, rng.uniform(-0.1, 0.9) * h
        x1, y1 = x0 + rng.uniform(0.15, 0.5) * w, y0 + rng.uniform(0.1, 0.45) * h
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        shape = rng.random()
        if shape < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape < 0.8:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(rng.randint(3, 6))], fill=colour)
    for _ in range(rng.randint(60, 110)):  # clutter: products, stickers, window frames
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(10, 60)
        draw.rectangle((x0, y0, x0 + s, y0 + s * rng.uniform(0.5, 2)), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    noise = nrng.integers(-9, 10, (h, w, 3), dtype=np.int16)  # drawn either way: the scene stays the same
    if not sensor_noise:
        return img
    arr = np.asarray(img).astype(np.int16) + noise  # this exposure's sensor noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def storefront(shop_seed: int, visit_seed: int) -> Image.Image:
    """One shop's front as a visitor photographs it: the shop's own scene, re-shot from about the same spot
    with this visit's light, passers-by and sensor noise (every visitor's photo is the same scene; the noise is
    each exposure's own, not the place's)."""
    return transforms.reshoot(scene(shop_seed, sensor_noise=False), visit_seed)


def _exif_bytes(taken_local: datetime | None, camera: tuple[str, str, str] | None) -> bytes | None:
    if taken_local is None:
        return None
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken_local.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
    sub[0x9011] = taken_local.strftime("%z")[:3] + ":" + taken_local.strftime("%z")[3:]  # OffsetTimeOriginal
    make, model, serial = camera or ("Xiaomi", "Redmi Note 12", None)
    exif[0x010F], exif[0x0110] = make, model
    if serial:
        sub[0xA431] = serial  # BodySerialNumber
    return exif.tobytes()


def camera_jpeg(img: Image.Image, taken_local: datetime | None = None, quality: int = 88,
                camera: tuple[str, str, str] | None = None) -> bytes:
    """A phone camera's JPEG of the scene (with capture time and camera (make, model, serial) in EXIF when given)."""
    buf = io.BytesIO()
    exif = _exif_bytes(taken_local, camera)
    img.convert("RGB").save(buf, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def reuse(data: bytes, transform: str) -> bytes:
    """An old photo made to look new: re-encoded through the named transform ('none' re-uploads the file)."""
    if transform == "none":
        return data
    img = Image.open(io.BytesIO(data))
    img.load()
    return transforms.jpeg(transforms.TRANSFORMS[transform](img), quality=82)
