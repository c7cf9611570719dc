"""What fraudsters do to a photo before re-submitting it, as reproducible transforms (simulator, tests, benches)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageOps


def jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def wechat(img):  # re-saved through a chat app: downscaled and recompressed hard
    small = img.copy()
    small.thumbnail((420, 420))
    return Image.open(io.BytesIO(jpeg(small, 45)))


def crop_centre(img, share=0.12):
    w, h = img.size
    return img.crop((int(w * share / 2), int(h * share / 2), int(w * (1 - share / 2)), int(h * (1 - share / 2))))


def crop_side(img, share=0.12):
    w, h = img.size
    return img.crop((0, 0, w, int(h * (1 - share))))


def watermark_band(img, share=0.12, text="2026-11-24 10:32 北京市东城区 门店拜访 打卡"):
    out = img.convert("RGB").copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, int(h * (1 - share)), w, h), fill=(20, 60, 140))
    draw.text((10, int(h * (1 - share)) + 6), text.encode("ascii", "ignore").decode() or "WATERMARK",
              fill=(255, 255, 255))
    draw.text((10, int(h * (1 - share / 2))), "lat 39.90 lon 116.40  GPS camera", fill=(255, 255, 0))
    return out


def screenshot(img):
    """The photo shown on a phone screen and screenshotted: black bars, a status bar."""
    w, h = img.size
    canvas = Image.new("RGB", (w + 40, int(h * 1.6)), (0, 0, 0))
    canvas.paste(img.convert("RGB"), (20, int(h * 0.3)))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, w + 40, 28), fill=(245, 245, 245))
    draw.text((8, 8), "10:32  4G  87%", fill=(0, 0, 0))
    return canvas


def mirror(img):
    return ImageOps.mirror(img)


def rotate90(img):
    return img.rotate(90, expand=True)


def resize(img):
    return img.resize((img.width * 2 // 3, img.height * 2 // 3))


TRANSFORMS = {"wechat": wechat, "crop_centre": crop_centre, "crop_side": crop_side,
              "watermark_band": watermark_band, "screenshot": screenshot, "mirror": mirror, "rotate90": rotate90,
              "resize": resize}


def low_texture(seed: int, size=(480, 360)) -> Image.Image:
    """A plain wall: a soft gradient with sensor noise (what many shelf/door photos look like)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = 120 + 40 * np.sin(x / size[0] * (1 + seed % 3)) + 25 * (y / size[1]) * (1 if seed % 2 else -1)
    arr = np.clip(base[..., None] + rng.normal(0, 4, (size[1], size[0], 3)) + rng.integers(-20, 20, 3), 0, 255)
    return Image.fromarray(arr.astype("uint8"))


def crop5(img, share=0.05):
    """Cropped by about 5 % on every side (what a re-user does to lose the edges hashes look at)."""
    w, h = img.size
    return img.crop((int(w * share), int(h * share), int(w * (1 - share)), int(h * (1 - share))))


def _rounded(canvas: Image.Image, radius: int, fill) -> Image.Image:
    """Paint the four corners outside a rounded rectangle (a phone screen's or a chat bubble's)."""
    mask = Image.new("L", canvas.size, 255)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, canvas.width - 1, canvas.height - 1), radius=radius, fill=0)
    out = canvas.copy()
    out.paste(Image.new("RGB", canvas.size, fill), (0, 0), mask)
    return out


def _status_bar(draw: ImageDraw.ImageDraw, w: int, h: int, bg, fg) -> None:
    draw.rectangle((0, 0, w, h), fill=bg)
    draw.text((int(w * 0.05), h // 4), "10:32", fill=fg)
    for i in range(4):  # signal bars, wifi, battery
        x = w - int(w * 0.28) + i * int(w * 0.06)
        draw.rectangle((x, h // 3, x + int(w * 0.04), h - h // 4), fill=fg)


def _nav_bar(draw: ImageDraw.ImageDraw, w: int, top: int, h: int, bg, fg) -> None:
    draw.rectangle((0, top, w, top + h), fill=bg)
    for i, x in enumerate((w // 4, w // 2, 3 * w // 4)):  # back, home, recents
        r = h // 4
        shape = draw.ellipse if i == 1 else draw.rectangle
        shape((x - r, top + h // 2 - r, x + r, top + h // 2 + r), outline=fg, width=2)


def phone_screenshot(img, style: str = "letterbox", screen=(720, 1560)):
    """The photo opened in a phone's gallery and screenshotted: status and navigation bars, rounded screen
    corners, and the photo letterboxed ('letterbox', black), filling the width right under the status bar
    ('statusbar', no gap), or shown with rounded corners on a light chat background ('rounded')."""
    sw, sh = screen
    bg = (0, 0, 0) if style != "rounded" else (237, 237, 237)
    canvas = Image.new("RGB", screen, bg)
    bar, nav = int(sh * 0.03), int(sh * 0.05)
    photo = img.convert("RGB")
    pw = sw if style != "rounded" else int(sw * 0.7)
    photo = photo.resize((pw, int(photo.height * pw / photo.width)), Image.Resampling.BILINEAR)
    if style == "rounded":
        photo = _rounded(photo, max(8, pw // 25), bg)
    top = bar if style == "statusbar" else (sh - photo.height) // 2
    left = (sw - photo.width) // 2 if style != "rounded" else int(sw * 0.22)
    canvas.paste(photo, (left, top))
    draw = ImageDraw.Draw(canvas)
    dark = style != "rounded"
    _status_bar(draw, sw, bar, (0, 0, 0) if dark else (250, 250, 250), (255, 255, 255) if dark else (0, 0, 0))
    _nav_bar(draw, sw, sh - nav, nav, (0, 0, 0) if dark else (250, 250, 250), (200, 200, 200) if dark else (60, 60, 60))
    return _rounded(canvas, int(sw * 0.06), (0, 0, 0))


def screenshot_letterbox(img):
    return phone_screenshot(img, "letterbox")


def screenshot_statusbar(img):
    return phone_screenshot(img, "statusbar")


def screenshot_rounded(img):
    return phone_screenshot(img, "rounded")


TRANSFORMS.update(crop5=crop5, screenshot_letterbox=screenshot_letterbox, screenshot_statusbar=screenshot_statusbar,
                  screenshot_rounded=screenshot_rounded)


def reshoot(img, seed: int, shift: float = 0.03):
    """Another exposure of the same place from about the same spot, on another day: a slightly different
    viewpoint (a small perspective change), other light and colour, a passer-by or two, fresh sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = img.size
    angles = rng.uniform(0, 2 * np.pi, 4)  # each corner of the view moves by ``shift`` in some direction
    jitter = np.stack([np.cos(angles), np.sin(angles)], axis=1) * shift * (w, h)
    corners = np.array([(0, 0), (w, 0), (w, h), (0, h)], dtype=np.float64) + jitter
    coeffs = _perspective_coeffs(corners, [(0, 0), (w, 0), (w, h), (0, h)])
    out = img.convert("RGB").transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
    arr = np.asarray(out).astype(np.float32)
    gain, gamma = rng.uniform(0.75, 1.25, 3), rng.uniform(0.8, 1.25)
    arr = 255 * (np.clip(arr * gain, 0, 255) / 255) ** gamma
    arr += rng.normal(0, 4, arr.shape)  # this sensor's own noise
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for _ in range(int(rng.integers(1, 3))):  # passers-by, a parked bike
        x, y = rng.uniform(0.1, 0.8) * w, rng.uniform(0.3, 0.7) * h
        draw.ellipse((x, y, x + w * 0.06, y + h * 0.3), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return out


def _perspective_coeffs(src, dst) -> list[float]:
    """PIL's 8 perspective coefficients mapping output points ``dst`` to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs, dtype=np.float64)).tolist()
