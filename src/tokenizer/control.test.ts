import { describe, expect, it } from "vitest";
import { extendEmbeddingRows } from "./control.js";

describe("extendEmbeddingRows", () => {
  it("keeps the old rows and fills new rows with the mean row", () => {
    // 3 rows x 2 dims: column means are (3, -2/3).
    const emb = Float32Array.from([1, 0, 2, -1, 6, -1]);
    const out = extendEmbeddingRows(emb, 3, 2, 2);
    expect(out.length).toBe(10);
    expect(Array.from(out.subarray(0, 6))).toEqual(Array.from(emb));
    expect(out[6]).toBe(3);
    expect(out[7]).toBeCloseTo(-2 / 3, 6);
    expect(Array.from(out.subarray(8, 10))).toEqual(Array.from(out.subarray(6, 8)));
  });

  it("matches a float64 oracle on a large random matrix and refuses a wrong shape", () => {
    const rows = 5000;
    const dim = 16;
    const emb = new Float32Array(rows * dim);
    let seed = 42;
    for (let i = 0; i < emb.length; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      emb[i] = seed / 2 ** 30 - 1 + 1000; // large offset: naive float32 sums would drift
    }
    const out = extendEmbeddingRows(emb, rows, dim, 3);
    for (let c = 0; c < dim; c++) {
      let sum = 0;
      for (let r = 0; r < rows; r++) sum += emb[r * dim + c];
      expect(out[rows * dim + c]).toBe(Math.fround(sum / rows));
    }
    expect(() => extendEmbeddingRows(emb, rows, dim + 1, 1)).toThrow(/expected rows\*dim/);
  });
});
