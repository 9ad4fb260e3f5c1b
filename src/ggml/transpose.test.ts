import { describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { Backend, getF32, setData } from "./backend.js";
import { Context } from "./context.js";

// Context.transposed builds f32 transposes from concat of two strided halves (faster than ggml's cont):
// check it against a host transpose on 2-d (even and odd ne1) and 4-d shapes, for 1 and 2 threads.
describe("Context.transposed", () => {
  const shapes: [number, number, number, number][] = [
    [5, 8, 1, 1],
    [7, 9, 1, 1],
    [3, 2, 1, 1],
    [4, 6, 3, 2],
    [6, 5, 2, 1],
  ];
  for (const threads of [1, 2]) {
    it(`matches a host transpose exactly (${threads} thread${threads > 1 ? "s" : ""})`, () => {
      const backend = new Backend(threads);
      for (const ne of shapes) {
        const [n0, n1, n2, n3] = ne;
        const s = new Context(4);
        const x = s.newTensor("f32", ne, "x");
        const buf = backend.allocTensors(s);
        const data = Float32Array.from({ length: n0 * n1 * n2 * n3 }, (_, i) => i * 0.5 - 3);
        setData(x, data);
        const c = new Context(64, 64);
        const t = c.transposed(x);
        const alloc = computeOnce(backend, c, 64, t);
        expect(t.ne).toEqual([n1, n0, n2, n3]);
        const got = getF32(t);
        const want = new Float32Array(data.length);
        for (let k = 0; k < n2 * n3; k++)
          for (let i = 0; i < n0; i++)
            for (let j = 0; j < n1; j++) want[k * n0 * n1 + i * n1 + j] = data[k * n0 * n1 + j * n0 + i]!;
        expect(got).toEqual(want);
        alloc.free();
        c.free();
        buf.free();
        s.free();
      }
      backend.free();
    });
  }
});
