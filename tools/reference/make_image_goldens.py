#!/usr/bin/env python3
"""Image decoding / CLIP preprocessing goldens for libflamingo.

Run from the repository root:

    /work/refenv/bin/python tools/reference/make_image_goldens.py

It deletes and regenerates Tests/Fixtures/images/ (about 0.6 MB):

  *.png, *.jpg        small test images (fixed seeds), written by Pillow or, for the PNG variants
                      Pillow cannot write (16-bit colour, Adam7, low bit depths with tRNS, eXIf after
                      IDAT), by the minimal PNG writer below
  bad/                inputs that must fail cleanly (truncated, corrupt, bombs, other formats)
  goldens.safetensors expected outputs, computed with the real libraries:
      "<file>@<S>"            U8 [S, S, 3]  the image after open_clip's eval transform up to and
                                            including _convert_to_rgb (Resize(S, BICUBIC),
                                            CenterCrop(S), convert("RGB")), i.e. the tensor before
                                            ToTensor/Normalize, times 255, exactly
      "<file>@<S>.normalized" F32 [3, S, S] the full transform's output tensor (a few images)
      "<file>.decoded"        U8 [H, W, 3]  the decoded image, convert("RGB") (small images)
      "<file>.raw"            U8 [H, W, C]  Pillow's pixels in the file's own mode (RGB/RGBA), for
                                            ImageDecoder.fromRaw
  index.json          what each image exercises, package versions, sha256 of every file

The reference for every image is

    im = ImageOps.exif_transpose(Image.open(path))
    open_clip.image_transform(S, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)(im)

EXIF: open_clip (and OpenFlamingo) never call exif_transpose, so the Python reference feeds
sideways photos to the model as stored. libflamingo applies the orientation (what a user expects),
so the goldens apply ImageOps.exif_transpose first; for files without an orientation it is a no-op.

Pillow 13 changed the order of its two resize passes (python-pillow/Pillow#9549): vertical first
when the height shrinks by more than twice as many pixels as the width, horizontal first otherwise.
The pass order is visible in the output (the image is rounded to 8 bits between the passes);
pass_order() finds, with Pillow alone, which order each golden took and checks the rule that
Sources/FlamingoCore/Image/PillowResample.swift implements; index.json records it.

One deliberate deviation: 16-bit grayscale PNGs. Pillow opens them as "I;16", and convert("RGB")
then clips each 16-bit sample at 255, so the reference turns almost any such image white.
libflamingo keeps the high byte of every 16-bit sample (as Pillow itself does for 16-bit RGB, RGBA
and gray+alpha PNGs); the golden for png16_gray_* is the reference transform of that 8-bit "L"
image, and the script checks that Pillow's own path really is the saturated one.

Deterministic: fixed seeds, no timestamps; two runs give identical files.
"""

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import struct
import sys
import warnings
import zlib
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import numpy as np
import PIL
import torch
from PIL import Image, ImageOps, PngImagePlugin
from safetensors.numpy import save_file

import open_clip
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "images"

# --------------------------------------------------------------------------------------------
# content


def pattern(w, h, seed, channels=3, noise=10.0, edges=True):
    """Smooth colour waves + noise + a hard-edged block (overshoot and clamping in bicubic)."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy, ph = rs.uniform(0.03, 0.35), rs.uniform(0.03, 0.35), rs.uniform(0, 6.28)
        v = 127.5 + 100 * np.sin(fx * x + fy * y + ph) + 35 * np.cos(0.07 * (x - 2 * y) * (c + 1))
        v = v + rs.normal(0, noise, size=(h, w))
        planes.append(v)
    a = np.stack(planes, -1)
    if edges and w > 4 and h > 4:
        x0, y0 = w // 4, h // 3
        a[y0 : y0 + max(1, h // 3), x0 : x0 + max(1, w // 3)] = rs.choice([0.0, 255.0], size=channels)
    return np.clip(a, 0, 255).round().astype(np.uint8)


def alpha_plane(w, h, seed):
    """Gradient alpha with fully transparent and fully opaque bands."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = 255 * (0.5 + 0.5 * np.sin(0.15 * x + 0.1 * y)) + rs.normal(0, 8, size=(h, w))
    a[:, : max(1, w // 6)] = 0
    a[:, -max(1, w // 6) :] = 255
    return np.clip(a, 0, 255).round().astype(np.uint8)


# --------------------------------------------------------------------------------------------
# a minimal PNG writer (for what Pillow cannot write)


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_row(row, bit_depth):
    """row: 1-D array of samples; packs sub-byte samples MSB first, 16-bit big-endian."""
    if bit_depth == 8:
        return row.astype(np.uint8).tobytes()
    if bit_depth == 16:
        assert row.min() >= 0 and row.max() <= 65535
        return row.astype(">u2").tobytes()
    per = 8 // bit_depth
    out = bytearray((len(row) + per - 1) // per)
    for i, v in enumerate(row):
        out[i // per] |= int(v) << (8 - bit_depth * (1 + i % per))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, color_type, bit_depth, interlace=False, palette=None, trns=None,
              before_idat=(), after_idat=()):
    """samples: [H, W, C] integer array in the file's sample values."""
    h, w = samples.shape[:2]
    flat = samples.reshape(h, w, -1)
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = flat[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for r in sub:
            raw += b"\0" + _pack_row(r.reshape(-1), bit_depth)
    png = b"\x89PNG\r\n\x1a\n"
    png += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        png += _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    for kind, data in before_idat:
        png += _chunk(kind, data)
    png += _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    for kind, data in after_idat:
        png += _chunk(kind, data)
    png += _chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def exif_blob(orientation, big_endian=False):
    e = ">" if big_endian else "<"
    tiff = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "H", orientation) + b"\0\0"
    tiff += b"\0\0\0\0"
    return b"Exif\x00\x00" + tiff


def xmp_packet(orientation):
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        f'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{orientation}"/></rdf:RDF>'
        '</x:xmpmeta><?xpacket end="w"?>'
    )


# --------------------------------------------------------------------------------------------
# the images


def make_images():
    """Writes every test image; returns [(file, sizes, note, decoded?, raw?, normalized sizes)]."""
    items = []

    def add(name, sizes, note, decoded=None, raw=False, normalized=()):
        p = OUT / name
        im = Image.open(p)
        if decoded is None:
            decoded = im.size[0] * im.size[1] <= 4096
        items.append(dict(file=name, sizes=list(sizes), note=note, decoded=decoded, raw=raw,
                          normalized=list(normalized), pillow_mode=im.mode, size=list(im.size)))

    def save(arr, name, mode=None, **kw):
        im = Image.fromarray(arr) if mode is None else Image.frombytes(mode, (arr.shape[1], arr.shape[0]), arr.tobytes())
        im.save(OUT / name, **kw)

    # RGB PNG, sizes and aspect ratios
    save(pattern(37, 53, 1, noise=40), "rgb_37x53.png")
    add("rgb_37x53.png", [48, 32], "odd size, noisy; upscale to 48, downscale to 32", normalized=[32])
    save(pattern(1, 1, 2, edges=False), "rgb_1x1.png")
    add("rgb_1x1.png", [32], "1x1")
    save(pattern(1, 300, 3), "rgb_1x300.png")
    add("rgb_1x300.png", [32], "1 wide: resized to 32x9600, centre cropped")
    save(pattern(300, 1, 4), "rgb_300x1.png")
    add("rgb_300x1.png", [32], "1 tall")
    save(pattern(500, 40, 5), "rgb_wide_500x40.png")
    add("rgb_wide_500x40.png", [48], "very wide")
    save(pattern(30, 410, 6), "rgb_tall_30x410.png")
    add("rgb_tall_30x410.png", [48], "very tall")
    save(pattern(150, 100, 7), "rgb_150x100.png")
    add("rgb_150x100.png", [224, 48], "upscale to 224 (336x224)")
    save(pattern(48, 48, 8), "rgb_48x48.png")
    add("rgb_48x48.png", [48, 32], "already 48: no resize, crop only")
    save(pattern(48, 53, 9), "rgb_48x53.png")
    add("rgb_48x53.png", [48], "no resize; crop top = round(2.5) = 2 (half to even)")
    save(pattern(49, 48, 10), "rgb_49x48.png")
    add("rgb_49x48.png", [48], "no resize; crop left = round(0.5) = 0")
    save(pattern(48, 51, 11), "rgb_48x51.png")
    add("rgb_48x51.png", [48], "no resize; crop top = round(1.5) = 2")

    # Pillow 13 resizes vertically first when the height shrinks by more than twice as many pixels
    # as the width (python-pillow/Pillow#9549): tall images with aspect > ~2 that are downscaled
    save(pattern(90, 300, 51, noise=12), "rgb_tall_down_90x300.png")
    add("rgb_tall_down_90x300.png", [48], "downscaled tall image: vertical pass first")
    save(pattern(40, 80, 52, noise=40), "rgb_tie_40x80.png")
    add("rgb_tie_40x80.png", [32], "40x80 -> 32x64: h-H == 2(w-W), still horizontal first")
    save(pattern(40, 81, 53, noise=40), "rgb_40x81.png")
    add("rgb_40x81.png", [32], "40x81 -> 32x64: h-H > 2(w-W), vertical first")
    save(np.dstack([pattern(60, 200, 54, noise=12), alpha_plane(60, 200, 55)]), "rgba_tall_60x200.png")
    add("rgba_tall_60x200.png", [32], "RGBA, vertical pass first")

    # other PNG modes
    save(pattern(120, 90, 12, channels=1)[..., 0], "gray_120x90.png")
    add("gray_120x90.png", [48], 'Pillow "L"')
    g4 = (pattern(40, 30, 13, channels=1)[..., 0] >> 4)
    write_png(OUT / "gray4_trns_40x30.png", g4[..., None], 0, 4, trns=struct.pack(">H", 7))
    add("gray4_trns_40x30.png", [32], '4-bit gray with tRNS: Pillow "L" (value*17), tRNS ignored')
    bits = (pattern(64, 40, 14, channels=1)[..., 0] > 127).astype(np.uint8)
    write_png(OUT / "bilevel_64x40.png", bits[..., None], 0, 1)
    add("bilevel_64x40.png", [48], 'Pillow "1": resized with NEAREST')
    la = np.dstack([pattern(50, 70, 15, channels=1)[..., 0], alpha_plane(50, 70, 16)])
    save(la, "la_50x70.png", "LA")
    add("la_50x70.png", [48], 'Pillow "LA": resized premultiplied ("La")')
    rgba = np.dstack([pattern(80, 64, 17), alpha_plane(80, 64, 18)])
    save(rgba, "rgba_80x64.png")
    add("rgba_80x64.png", [48, 64], 'Pillow "RGBA": resized premultiplied ("RGBa"), alpha then dropped',
        raw=True, normalized=[48])
    Image.fromarray(pattern(40, 40, 19)).save(OUT / "rgb_trns_40x40.png", transparency=(10, 20, 30))
    add("rgb_trns_40x40.png", [32], "RGB with tRNS (ignored)")
    pal_rs = np.random.RandomState(20)
    palette = pal_rs.randint(0, 256, (256, 3)).astype(np.uint8)
    idx = pattern(90, 70, 21, channels=1)[..., 0]
    pim = Image.frombytes("P", (90, 70), idx.tobytes())
    pim.putpalette(palette.reshape(-1).tolist())
    pim.save(OUT / "palette_90x70.png")
    add("palette_90x70.png", [48], 'Pillow "P": resized with NEAREST, then palette lookup')
    idx4 = pattern(33, 21, 22, channels=1)[..., 0] >> 4
    write_png(OUT / "palette4_trns_33x21.png", idx4[..., None], 3, 4, palette=palette[:16],
              trns=bytes([0, 128, 255, 40]))
    add("palette4_trns_33x21.png", [32], "4-bit palette with tRNS (dropped by convert)")
    p16 = pattern(60, 45, 23).astype(np.int64) * 256 + np.random.RandomState(24).randint(0, 256, (45, 60, 3))
    write_png(OUT / "png16_rgb_60x45.png", p16, 2, 16)
    add("png16_rgb_60x45.png", [48], '16-bit RGB: Pillow keeps the high byte ("RGB;16B")')
    p16a = np.dstack([pattern(30, 40, 25), alpha_plane(30, 40, 26)]).astype(np.int64) * 256 + 200
    write_png(OUT / "png16_rgba_30x40.png", p16a, 6, 16)
    add("png16_rgba_30x40.png", [32], "16-bit RGBA")
    p16la = np.dstack([pattern(20, 30, 27, channels=1)[..., 0], alpha_plane(20, 30, 28)]).astype(np.int64) * 257
    write_png(OUT / "png16_la_20x30.png", p16la, 4, 16)
    add("png16_la_20x30.png", [32], '16-bit gray+alpha: Pillow "RGBA" ("LA;16B")')
    g16 = pattern(50, 40, 29, channels=1)[..., 0].astype(np.int64) * 256 + 255
    write_png(OUT / "png16_gray_50x40.png", g16[..., None], 0, 16)
    add("png16_gray_50x40.png", [32], "16-bit gray: DEVIATION, golden = reference on the high byte")
    write_png(OUT / "interlaced_rgb_57x43.png", pattern(57, 43, 30), 2, 8, interlace=True)
    add("interlaced_rgb_57x43.png", [48], "Adam7 interlaced RGB")
    write_png(OUT / "interlaced_rgba_31x29.png", np.dstack([pattern(31, 29, 31), alpha_plane(31, 29, 32)]),
              6, 8, interlace=True)
    add("interlaced_rgba_31x29.png", [32], "Adam7 interlaced RGBA")
    write_png(OUT / "png_exif6_40x24.png", pattern(40, 24, 33), 2, 8, after_idat=[(b"eXIf", exif_blob(6)[6:])])
    add("png_exif6_40x24.png", [32], "eXIf chunk after IDAT, orientation 6")
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(3))
    Image.fromarray(pattern(40, 24, 34)).save(OUT / "png_xmp3_40x24.png", pnginfo=info)
    add("png_xmp3_40x24.png", [32], "XMP (iTXt) orientation 3")

    # JPEG
    photo = pattern(640, 480, 40, noise=3)
    Image.fromarray(photo).save(OUT / "photo_640x480.jpg", quality=85)
    add("photo_640x480.jpg", [224, 32], "4:2:0 baseline, downscale 2.14x and 15x")
    for sub, name in [(2, "jpeg420_37x53.jpg"), (1, "jpeg422_61x47.jpg"), (0, "jpeg444_45x33.jpg")]:
        w, h = (int(s) for s in name.split("_")[1][:-4].split("x"))
        Image.fromarray(pattern(w, h, 41 + sub)).save(OUT / name, quality=90, subsampling=sub)
        add(name, [48], f"chroma subsampling {['4:4:4', '4:2:2', '4:2:0'][sub]}")
    Image.fromarray(pattern(70, 50, 45, channels=1)[..., 0]).save(OUT / "gray_70x50.jpg", quality=90)
    add("gray_70x50.jpg", [48], 'grayscale JPEG, Pillow "L"', normalized=[48])
    cmyk = pattern(64, 48, 46, channels=4)
    Image.frombytes("CMYK", (64, 48), cmyk.tobytes()).save(OUT / "cmyk_64x48.jpg", quality=90)
    add("cmyk_64x48.jpg", [48], 'CMYK JPEG (Adobe, inverted): Pillow "CMYK", resized before cmyk->rgb')
    Image.fromarray(pattern(100, 75, 47)).save(OUT / "progressive_100x75.jpg", quality=90, progressive=True)
    add("progressive_100x75.jpg", [48], "progressive JPEG")
    for o in range(1, 9):
        name = f"exif{o}_40x24.jpg"
        blob = exif_blob(o, big_endian=(o == 6))
        Image.fromarray(pattern(40, 24, 48)).save(OUT / name, quality=92, exif=blob)
        add(name, [32], f"EXIF orientation {o}" + (" (big-endian TIFF)" if o == 6 else ""))
    Image.fromarray(pattern(40, 24, 49)).save(OUT / "xmp8_40x24.jpg", quality=92, xmp=xmp_packet(8).encode())
    add("xmp8_40x24.jpg", [32], "XMP orientation 8, no EXIF")
    return items


def make_bad():
    bad = OUT / "bad"
    bad.mkdir()
    jpg = (OUT / "progressive_100x75.jpg").read_bytes()
    base = (OUT / "jpeg444_45x33.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(base[: len(base) // 2])
    (bad / "no_eoi.jpg").write_bytes(base[:-2])
    (bad / "truncated_progressive.jpg").write_bytes(jpg[: len(jpg) * 2 // 3])
    corrupt = bytearray(base)
    sos = corrupt.find(b"\xff\xc4")  # first DHT: make the Huffman table invalid
    corrupt[sos + 5 : sos + 21] = b"\xff" * 16
    (bad / "bad_huffman.jpg").write_bytes(bytes(corrupt))
    # SOF0 declaring 60000 x 60000 (3.6 Gpx) in an otherwise valid file
    huge = bytearray(base)
    sof = huge.find(b"\xff\xc0")
    huge[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    (bad / "huge.jpg").write_bytes(bytes(huge))
    zero = bytearray(base)
    zero[sof + 5 : sof + 7] = struct.pack(">H", 0)
    (bad / "zero_height.jpg").write_bytes(bytes(zero))

    png = (OUT / "rgb_37x53.png").read_bytes()
    crc = bytearray(png)
    crc[29] ^= 0xFF  # IHDR CRC (signature 8 + length 4 + type 4 + data 13 = 29)
    (bad / "bad_crc.png").write_bytes(bytes(crc))
    (bad / "truncated.png").write_bytes(png[: len(png) * 2 // 3])
    idat = bytearray(png)
    i = idat.find(b"IDAT")
    idat[i + 10 : i + 30] = bytes(20)  # damage the deflate stream, fix nothing: CRC fails
    (bad / "bad_idat.png").write_bytes(bytes(idat))

    def ihdr_png(w, h):
        return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))

    (bad / "huge.png").write_bytes(ihdr_png(100000, 100000))
    (bad / "zero_width.png").write_bytes(ihdr_png(0, 10))
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "garbage.bin").write_bytes(np.random.RandomState(7).randint(0, 256, 300).astype(np.uint8).tobytes())
    (bad / "text.jpg").write_bytes(b"hello, this is not an image\n")
    (bad / "signature_only.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    b = io.BytesIO()
    Image.fromarray(pattern(8, 8, 50)).save(b, "GIF")
    (bad / "image.gif").write_bytes(b.getvalue())
    # Pillow must reject all of these too (except the format it can read but we do not)
    for p in sorted(bad.iterdir()):
        try:
            Image.open(p).load()
            ok = True
        except Exception:
            ok = False
        assert not ok or p.suffix == ".gif", f"Pillow accepts {p.name}"


# --------------------------------------------------------------------------------------------


def reference(path, size, high_byte_gray16=False):
    """(u8 [S,S,3] before ToTensor, f32 [3,S,S] full transform) for one file."""
    im = Image.open(path)
    im = ImageOps.exif_transpose(im)
    if high_byte_gray16:
        assert im.mode == "I;16"
        a = np.asarray(im).astype(np.uint16)
        im = Image.fromarray((a >> 8).astype(np.uint8), "L")
    t = open_clip.image_transform(size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    names = [getattr(x, "__name__", type(x).__name__) for x in t.transforms]
    assert names == ["Resize", "CenterCrop", "_convert_to_rgb", "ToTensor", "Normalize"], names
    x = im
    for step in t.transforms[:3]:
        x = step(x)
    assert x.mode == "RGB" and x.size == (size, size)
    u8 = np.asarray(x, dtype=np.uint8).copy()
    f32 = t(im).numpy().astype(np.float32)
    # the two agree: ToTensor + Normalize in float32, exactly as libflamingo computes it
    mean = np.array(OPENAI_DATASET_MEAN, np.float32)[:, None, None]
    std = np.array(OPENAI_DATASET_STD, np.float32)[:, None, None]
    mine = (u8.transpose(2, 0, 1).astype(np.float32) / np.float32(255) - mean) / std
    assert np.array_equal(mine, f32), float(np.abs(mine - f32).max())
    return u8, f32


def pass_order(path, size):
    """Which order Pillow's two-pass resize took for this golden, found with Pillow alone: two
    single-axis resizes in a row reproduce each order exactly (the crop does not matter)."""
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode in ("P", "1", "I;16"):
        return "n/a"
    if im.mode in ("RGBA", "LA"):
        im = im.convert({"RGBA": "RGBa", "LA": "La"}[im.mode])
    w, h = im.size
    t = open_clip.image_transform(size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    W, H = t.transforms[0](Image.new("L", (w, h))).size
    if W == w or H == h:
        return "one pass" if (W, H) != (w, h) else "none"
    both = np.asarray(im.resize((W, H), Image.BICUBIC))
    hv = np.asarray(im.resize((W, h), Image.BICUBIC).resize((W, H), Image.BICUBIC))
    vh = np.asarray(im.resize((w, H), Image.BICUBIC).resize((W, H), Image.BICUBIC))
    order = ("horizontal first" if np.array_equal(both, hv) else "") + ("vertical first" if np.array_equal(both, vh) else "")
    assert order, "neither pass order reproduces Pillow"
    rule = H < h and h - H > 2 * (w - W)  # PillowResample.verticalFirst
    assert order == ("vertical first" if rule else "horizontal first") or np.array_equal(hv, vh), (path, order)
    return order if not np.array_equal(hv, vh) else "either"


def self_checks():
    """Pillow's conversions that the Swift code reproduces (PixelConvert.swift), exhaustively."""
    a = np.arange(256)
    A, B = np.meshgrid(a, a, indexing="ij")

    def muldiv255(x, y):
        t = x * y + 128
        return ((t >> 8) + t) >> 8

    arr = np.zeros((256, 256, 4), np.uint8)
    arr[..., 0] = A
    arr[..., 3] = B
    pm = np.asarray(Image.fromarray(arr, "RGBA").convert("RGBa")).astype(int)
    assert np.array_equal(pm[..., 0], muldiv255(A, B))
    un = np.asarray(Image.fromarray(arr, "RGBa").convert("RGBA")).astype(int)
    assert np.array_equal(un[..., 0], np.where((B == 255) | (B == 0), A, np.clip((255 * A) // np.maximum(B, 1), 0, 255)))
    arr[..., 3] = 255 - B  # K
    rgb = np.asarray(Image.frombytes("CMYK", (256, 256), arr.tobytes()).convert("RGB")).astype(int)
    nk = B
    assert np.array_equal(rgb[..., 0], np.clip(nk - muldiv255(A, nk), 0, 255))
    i16 = Image.frombytes("I;16", (3, 1), np.array([200, 255, 40000], "<u2").tobytes())
    assert list(np.asarray(i16.convert("RGB"))[0, :, 0]) == [200, 255, 255]  # the clipping noted above


def sha256(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    self_checks()
    items = make_images()
    make_bad()

    tensors = {}
    for it in items:
        path = OUT / it["file"]
        gray16 = it["file"].startswith("png16_gray")
        if gray16:  # document the deviation: Pillow's own path saturates
            u8_pillow, _ = reference(path, it["sizes"][0])
            assert (u8_pillow == 255).mean() > 0.6
        for s in it["sizes"]:
            u8, f32 = reference(path, s, high_byte_gray16=gray16)
            tensors[f"{it['file']}@{s}"] = u8
            if s in it["normalized"]:
                tensors[f"{it['file']}@{s}.normalized"] = f32
        im = ImageOps.exif_transpose(Image.open(path))
        if it["decoded"]:
            if gray16:
                dec = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
                dec = np.repeat(dec[..., None], 3, axis=2)
            else:
                dec = np.asarray(im.convert("RGB"), dtype=np.uint8)
            tensors[f"{it['file']}.decoded"] = np.ascontiguousarray(dec)
        if it["raw"]:
            tensors[f"{it['file']}.raw"] = np.ascontiguousarray(np.asarray(Image.open(path), dtype=np.uint8))
        it["orientation"] = int(Image.open(path).getexif().get(0x0112, 1))
        it["pass_order"] = {str(sz): pass_order(path, sz) for sz in it["sizes"]}

    save_file(dict(sorted(tensors.items())), str(OUT / "goldens.safetensors"),
              metadata={"generator": "tools/reference/make_image_goldens.py"})
    os.chmod(OUT / "goldens.safetensors", 0o644)

    index = {
        "generator": "tools/reference/make_image_goldens.py",
        "reference": "ImageOps.exif_transpose(Image.open(f)) -> open_clip.image_transform(S, is_train=False, "
                     "mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)",
        "versions": {
            "python": sys.version.split()[0],
            "Pillow": PIL.__version__,
            "torch": torch.__version__,
            "torchvision": importlib.metadata.version("torchvision"),
            "open_clip_torch": importlib.metadata.version("open_clip_torch"),
            "safetensors": importlib.metadata.version("safetensors"),
            "numpy": np.__version__,
        },
        "images": items,
        "files": {},
    }
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            rel = p.relative_to(OUT).as_posix()
            index["files"][rel] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
            total += p.stat().st_size
    index["total_bytes"] = total
    (OUT / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    assert total < 1_300_000, total
    print(f"{len(items)} images, {len(tensors)} tensors, {total} bytes")


if __name__ == "__main__":
    main()
