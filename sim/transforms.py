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
