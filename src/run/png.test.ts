import { inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { encodePng, lossCurvePng } from "./png.js";

/** A minimal PNG reader: chunk CRCs, IHDR and the inflated scanlines. */
function decode(png: Buffer) {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let at = 8;
  const chunks: Array<{ type: string; data: Buffer }> = [];
  while (at < png.length) {
    const len = png.readUInt32BE(at);
    const type = png.subarray(at + 4, at + 8).toString("latin1");
    chunks.push({ type, data: png.subarray(at + 8, at + 8 + len) });
    at += 12 + len;
  }
  const ihdr = chunks[0]?.data as Buffer;
  const idat = Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.data));
  return {
    types: chunks.map((c) => c.type),
    width: ihdr.readUInt32BE(0),
    height: ihdr.readUInt32BE(4),
    raw: inflateSync(idat),
  };
}

describe("png", () => {
  it("encodes RGB scanlines that decode back", () => {
    const rgb = Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => i * 10);
    const d = decode(encodePng(3, 2, rgb));
    expect(d.types).toEqual(["IHDR", "IDAT", "IEND"]);
    expect([d.width, d.height]).toEqual([3, 2]);
    expect([...d.raw]).toEqual([0, ...rgb.subarray(0, 9), 0, ...rgb.subarray(9)]);
  });

  it("draws a loss curve: blue training line and orange validation points", () => {
    const train = Array.from({ length: 50 }, (_, i) => ({ step: i + 1, loss: 5 / (1 + i / 10) }));
    const d = decode(
      lossCurvePng(
        train,
        [
          { step: 25, loss: 2 },
          { step: 50, loss: 1.2 },
        ],
        320,
        200,
      ),
    );
    expect([d.width, d.height]).toEqual([320, 200]);
    const has = (r: number, g: number, b: number) => {
      for (let y = 0; y < 200; y++) {
        for (let x = 0; x < 320; x++) {
          const o = y * (320 * 3 + 1) + 1 + x * 3;
          if (d.raw[o] === r && d.raw[o + 1] === g && d.raw[o + 2] === b) return true;
        }
      }
      return false;
    };
    expect(has(31, 119, 180)).toBe(true);
    expect(has(255, 127, 14)).toBe(true);
  });

  it("draws the curve of a run with 300,000 logged steps", () => {
    const train = Array.from({ length: 300_000 }, (_, i) => ({ step: i + 1, loss: 5 / (1 + i / 1e4) }));
    expect(decode(lossCurvePng(train, [], 64, 48)).width).toBe(64);
  });
});
