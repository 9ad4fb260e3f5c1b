import { describe, expect, it } from "vitest";
import { Backend, Graph, getF32, setData } from "./backend.js";
import { Context } from "./context.js";

// Native owners free once, throw a located error when used after their free (instead of handing ggml a
// dangling pointer), and work with `using`, which frees them on every exit from the scope, a throw included.
describe("native handles", () => {
  it("a context frees once; its tensors and graphs throw once it is gone", () => {
    const backend = new Backend(1);
    const c = new Context(4, 16);
    const x = c.newTensor("f32", [4], "x");
    const g = new Graph(c, 16);
    g.expand(c.scale(x, 2));
    c.free();
    c.free();
    expect(() => c.newTensor("f32", [4])).toThrow("ggml context used after free");
    expect(() => c.scale(x, 2)).toThrow("ggml context used after free");
    expect(() => getF32(x)).toThrow("ggml tensor x used after its context was freed");
    expect(() => g.nodeCount).toThrow("ggml graph used after its context was freed");
    expect(() => backend.compute(g)).toThrow("ggml graph used after its context was freed");
    backend.free();
  });

  it("a backend, its buffers and allocators free once and throw when used after", () => {
    const backend = new Backend(1);
    const c = new Context(4, 16);
    const x = c.newTensor("f32", [4], "x");
    const buf = backend.allocTensors(c);
    expect(buf.size).toBeGreaterThanOrEqual(16);
    const alloc = backend.newAllocator();
    const g = new Graph(c, 16);
    g.expand(c.scale(x, 2));
    alloc.alloc(g);
    for (const o of [alloc, buf, backend]) {
      o.free();
      o.free();
    }
    expect(() => buf.size).toThrow("ggml backend buffer used after free");
    expect(() => alloc.alloc(g)).toThrow("ggml graph allocator used after free");
    expect(() => backend.compute(g)).toThrow("ggml backend used after free");
    expect(() => backend.info).toThrow("ggml backend used after free");
    expect(() => backend.allocTensors(c)).toThrow("ggml backend used after free");
    c.free();
  });

  it("`using` frees at the end of the scope, and when the scope throws", () => {
    const made: Context[] = [];
    const compute = (fail: boolean): Float32Array => {
      using backend = new Backend(1);
      using c = new Context(4, 16);
      made.push(c);
      const x = c.newTensor("f32", [3], "x");
      using _buf = backend.allocTensors(c);
      setData(x, Float32Array.of(1, 2, 3));
      const y = c.scale(x, 2);
      const g = new Graph(c, 16);
      g.expand(y);
      using alloc = backend.newAllocator();
      alloc.alloc(g);
      if (fail) throw new Error("failed halfway");
      backend.compute(g);
      return getF32(y);
    };
    expect(compute(false)).toEqual(Float32Array.of(2, 4, 6));
    expect(() => compute(true)).toThrow("failed halfway");
    expect(made).toHaveLength(2);
    for (const c of made) expect(() => c.newTensor("f32", [1])).toThrow("ggml context used after free");
  });
});
