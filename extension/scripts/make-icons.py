#!/usr/bin/env python3
"""Draws Trickle's toolbar and store icons: the droplet of the pages' mark, in the accent colour.

Writes extension/static/icons/icon-{16,32,48,128}.png. Standard library only (zlib + struct);
each pixel is 8x8 supersampled so edges are smooth at every size. Run again after a change:

    python3 extension/scripts/make-icons.py
"""

import math
import os
import struct
import zlib

ACCENT = (0x0F, 0x76, 0x6E)
SIZES = (16, 32, 48, 128)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "static", "icons")

# The mark's geometry on its 32x32 grid (the same path as the pages' inline SVG):
# a circle of radius 9.5 at (16, 19.5) below, and two cubic curves up to the tip at (16, 2.5).
TIP = (16.0, 2.5)
CENTER = (16.0, 19.5)
RADIUS = 9.5


def cubic(p0, p1, p2, p3, steps=64):
    pts = []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        pts.append(
            (
                u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0],
                u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1],
            )
        )
    return pts


def droplet_polygon():
    left = cubic(TIP, TIP, (6.5, 13.2), (6.5, 19.5))
    bottom = [
        (CENTER[0] - RADIUS * math.cos(math.pi * i / 64), CENTER[1] + RADIUS * math.sin(math.pi * i / 64))
        for i in range(1, 64)
    ]
    right = cubic((25.5, 19.5), (25.5, 13.2), TIP, TIP)
    return left + bottom + right


POLY = droplet_polygon()


def inside(x, y):
    """Even-odd point-in-polygon test."""
    hit = False
    n = len(POLY)
    for i in range(n):
        x1, y1 = POLY[i]
        x2, y2 = POLY[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


# The highlight: an arc of radius 4.9 around the circle's centre, lower left, stroke width 2.
ARC_R, ARC_FROM, ARC_TO, ARC_W = 4.9, math.radians(99), math.radians(176), 1.0


def on_highlight(x, y):
    dx, dy = x - CENTER[0], y - CENTER[1]
    angle = math.atan2(dy, dx)
    if ARC_FROM <= angle <= ARC_TO:
        return abs(math.hypot(dx, dy) - ARC_R) <= ARC_W
    for a in (ARC_FROM, ARC_TO):
        ex, ey = CENTER[0] + ARC_R * math.cos(a), CENTER[1] + ARC_R * math.sin(a)
        if math.hypot(x - ex, y - ey) <= ARC_W:
            return True
    return False


def render(size):
    # Fit the droplet's height (2.5..29) into the square with a small margin, centred.
    top, bottom = 2.5, 29.0
    margin = 0.04 * size
    scale = (size - 2 * margin) / (bottom - top)
    ox = size / 2 - 16.0 * scale
    oy = margin - top * scale
    ss = 8
    highlight = size >= 32
    rows = []
    for py in range(size):
        row = bytearray()
        for px in range(size):
            cover = white = 0
            for sy in range(ss):
                for sx in range(ss):
                    x = ((px + (sx + 0.5) / ss) - ox) / scale
                    y = ((py + (sy + 0.5) / ss) - oy) / scale
                    if inside(x, y):
                        cover += 1
                        if highlight and on_highlight(x, y):
                            white += 1
            n = ss * ss
            if cover == 0:
                row += b"\0\0\0\0"
                continue
            # Mix white into the accent where the highlight is (0.9 opacity, as in the SVG).
            w = 0.9 * white / cover
            rgb = [round(c * (1 - w) + 255 * w) for c in ACCENT]
            row += bytes(rgb + [round(255 * cover / n)])
        rows.append(bytes(row))
    return png(size, size, rows)


def png(width, height, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + r for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    for size in SIZES:
        path = os.path.join(OUT, f"icon-{size}.png")
        with open(path, "wb") as f:
            f.write(render(size))
        print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
