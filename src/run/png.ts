import { deflateSync } from "node:zlib";

/**
 * The loss-curve image: a tiny RGB canvas, a line plot of training loss (blue) and validation loss
 * (orange dots joined by lines) against the step, axis ticks labelled with a 3×5 pixel font, and a
 * PNG encoder on node:zlib (no image dependency).
 */
export class Canvas {
  readonly pixels: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: [number, number, number] = [255, 255, 255],
  ) {
    this.pixels = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.pixels.set(background, i * 3);
  }

  set(x: number, y: number, c: readonly [number, number, number]): void {
    const xi = Math.round(x);
    const yi = Math.round(y);
    if (xi < 0 || yi < 0 || xi >= this.width || yi >= this.height) return;
    this.pixels.set(c, (yi * this.width + xi) * 3);
  }

  line(x0: number, y0: number, x1: number, y1: number, c: readonly [number, number, number]): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    for (let i = 0; i <= n; i++) this.set(x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n, c);
  }

  dot(x: number, y: number, c: readonly [number, number, number]): void {
    for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) this.set(x + dx, y + dy, c);
  }

  /** Draws digits, '.', '-' and 'e' in a 3×5 font, 1px apart, top-left at (x, y). */
  text(x: number, y: number, s: string, c: readonly [number, number, number]): void {
    for (const ch of s) {
      const glyph = FONT[ch];
      if (glyph) {
        for (let row = 0; row < 5; row++) {
          for (let col = 0; col < 3; col++)
            if ((glyph[row] as number) & (4 >> col)) this.set(x + col, y + row, c);
        }
      }
      x += 4;
    }
  }

  png(): Buffer {
    return encodePng(this.width, this.height, this.pixels);
  }
}

// 3-bit rows, most significant bit = left column.
const FONT: Record<string, number[]> = {
  "0": [7, 5, 5, 5, 7],
  "1": [2, 6, 2, 2, 7],
  "2": [7, 1, 7, 4, 7],
  "3": [7, 1, 7, 1, 7],
  "4": [5, 5, 7, 1, 1],
  "5": [7, 4, 7, 1, 7],
  "6": [7, 4, 7, 5, 7],
  "7": [7, 1, 1, 1, 1],
  "8": [7, 5, 7, 5, 7],
  "9": [7, 5, 7, 1, 7],
  ".": [0, 0, 0, 0, 2],
  "-": [0, 0, 7, 0, 0],
  e: [0, 7, 7, 4, 7],
};

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit RGB PNG (filter 0 on every row). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0;
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  }
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    sig,
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", new Uint8Array(0)),
  ]);
}

export interface LossPoint {
  step: number;
  loss: number;
}

const BLUE = [31, 119, 180] as const;
const ORANGE = [255, 127, 14] as const;
const GREY = [170, 170, 170] as const;
const BLACK = [0, 0, 0] as const;

function tickLabel(v: number): string {
  if (v === 0) return "0";
  if (Math.abs(v) >= 1000 || Math.abs(v) < 0.01) return v.toExponential(1).replace("+", "");
  return Number(v.toPrecision(3)).toString();
}

/** Training loss (blue line) and validation loss (orange) against the optimiser step. */
export function lossCurvePng(
  train: readonly LossPoint[],
  val: readonly LossPoint[],
  width = 640,
  height = 400,
): Buffer {
  const c = new Canvas(width, height);
  const left = 44;
  const right = width - 12;
  const top = 12;
  const bottom = height - 24;
  const all = [...train, ...val].filter((p) => Number.isFinite(p.loss));
  // Loops, not Math.max(...points): a long run's points spread onto the call stack overflow it.
  let maxStep = 1;
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const p of all) {
    maxStep = Math.max(maxStep, p.step);
    lo = Math.min(lo, p.loss);
    hi = Math.max(hi, p.loss);
  }
  const yMin = Number.isFinite(lo) ? Math.max(0, lo - 0.05 * (hi - lo)) : 0;
  const yMax = Number.isFinite(hi) && hi > yMin ? hi + 0.05 * (hi - yMin) : yMin + 1;
  const X = (step: number) => left + ((right - left) * step) / maxStep;
  const Y = (loss: number) => bottom - ((bottom - top) * (loss - yMin)) / (yMax - yMin);
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    c.line(left, Y(v), right, Y(v), GREY);
    c.text(2, Y(v) - 2, tickLabel(v), BLACK);
    const s = Math.round((maxStep * i) / 4);
    c.line(X(s), bottom, X(s), bottom + 3, BLACK);
    c.text(X(s) - 2 * String(s).length, bottom + 7, String(s), BLACK);
  }
  c.line(left, top, left, bottom, BLACK);
  c.line(left, bottom, right, bottom, BLACK);
  const plot = (points: readonly LossPoint[], color: readonly [number, number, number], dots: boolean) => {
    let prev: LossPoint | undefined;
    for (const p of points) {
      if (!Number.isFinite(p.loss)) continue;
      if (prev) c.line(X(prev.step), Y(prev.loss), X(p.step), Y(p.loss), color);
      if (dots) c.dot(X(p.step), Y(p.loss), color);
      prev = p;
    }
  };
  plot(train, BLUE, false);
  plot(val, ORANGE, true);
  return c.png();
}
