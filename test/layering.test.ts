import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// Imports point inward: a folder of src/ may import its own layer and the layers before it, never a later
// one, and no folders may import each other in a cycle (not even within a layer). Files directly in src/
// are named by file. Tests are not part of the graph: they may import whatever they check.
const LAYERS: ReadonlyArray<readonly string[]> = [
  // leaf helpers every layer uses (errors, logging, files, progress) and the version string
  ["util", "version.ts"],
  // SteerLM's data (records, attribute schemas, templates, dataset formats): plain values, no engine
  ["data"],
  // what engines are built from, none knowing a model architecture: the GGUF file format, ggml compute
  // (koffi), tokenizers, node-llama-cpp's runtime
  ["gguf", "ggml", "tokenizer", "runtime"],
  // the two engines: the Llama model (architecture, weights and graphs on ggml) and inference through
  // node-llama-cpp
  ["model", "inference"],
  // training a model (batches, the optimiser), and converting models between formats (Hugging Face ↔ GGUF)
  ["train", "interop"],
  // the one training run every job shares: settings, data → batches, the loop, checkpoints, export
  ["run"],
  // run steps: each a stage of SteerLM (attribute models, bootstrapping, SteerLM 2, evaluation, demo) or
  // the synthetic benchmark, built from the engines and the run; and jobs, a run's settings and data
  // written for a distributed engine instead of run here
  ["apm", "bootstrap", "steerlm2", "eval", "demo", "steerbench", "jobs"],
  // studies composed of run steps: the paper's ablation (trains, annotates, bootstraps, judges, reports)
  ["reproduce"],
  // entry points over everything: the command line, the HTTP server and the package's API (src/index.ts)
  ["cli", "serve", "index.ts"],
];

// The modules of src/ggml the rest of the tree may import: handles and errors, never a pointer or a ggml
// enum. Its other modules (native*.ts, ffi.ts, handles.ts, device.ts…) are its inside.
const GGML_PUBLIC = ["index.ts", "backend.ts", "context.ts", "tensor.ts"];

const SRC = fileURLToPath(new URL("../src", import.meta.url));

interface Import {
  file: string;
  target: string;
  from: string;
  to: string;
}

/** A path relative to src/ → its node: its first folder, or its name for a file directly in src/. */
function nodeOf(rel: string): string {
  return rel.split(sep)[0] as string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? [p] : [];
  });
}

/** Every relative import, re-export and dynamic import of every non-test file under src/. */
function imports(): Import[] {
  return sourceFiles(SRC).flatMap((path) => {
    const file = relative(SRC, path);
    const { importedFiles } = ts.preProcessFile(readFileSync(path, "utf8"), true, true);
    return importedFiles
      .filter((f) => f.fileName.startsWith("."))
      .map((f) => {
        // NodeNext specifiers name the emitted .js; the source is the .ts beside it
        const target = relative(SRC, resolve(dirname(path), f.fileName)).replace(/\.js$/, ".ts");
        return { file, target, from: nodeOf(file), to: nodeOf(target) };
      })
      .filter((i) => !i.target.startsWith("..") && i.from !== i.to);
  });
}

const layerOf = new Map(LAYERS.flatMap((nodes, i) => nodes.map((n) => [n, i] as const)));
const describeEdge = (i: Import) => `${i.from} → ${i.to} (${i.file} imports ${i.target})`;

function isUpward(i: Import): boolean {
  return (layerOf.get(i.to) ?? 0) > (layerOf.get(i.from) ?? 0);
}

/** The folder cycles of `edges` (Tarjan's strongly connected components of more than one node). */
function cycles(edges: readonly Import[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) next.set(e.from, (next.get(e.from) ?? new Set()).add(e.to));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v) as number);
    stack.push(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (let w = stack.pop(); w !== undefined; w = w === v ? undefined : stack.pop()) component.push(w);
    if (component.length > 1) found.push(component.sort());
  };
  for (const v of next.keys()) if (!index.has(v)) visit(v);
  return found;
}

/** One import per edge of `cycle`, as evidence. */
function cycleEdges(cycle: readonly string[], edges: readonly Import[]): string[] {
  const inCycle = new Set(cycle);
  const seen = new Map<string, Import>();
  for (const e of edges) if (inCycle.has(e.from) && inCycle.has(e.to)) seen.set(`${e.from}→${e.to}`, e);
  return [...seen.values()].map(describeEdge);
}

describe("src/ layering", () => {
  const all = imports();

  it("places every folder of src/ in a layer", () => {
    const nodes = readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory() || (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")))
      .map((e) => e.name);
    const missing = nodes.filter((n) => !layerOf.has(n));
    expect(missing, "add them to LAYERS in test/layering.test.ts, with why they sit there").toEqual([]);
  });

  it("has no import pointing outward, to a later layer", () => {
    expect(all.filter(isUpward).map(describeEdge)).toEqual([]);
  });

  it("has no folder cycle", () => {
    expect(cycles(all).map((c) => `${c.join(" ↔ ")}: ${cycleEdges(c, all).join("; ")}`)).toEqual([]);
  });

  it("keeps src/ggml's pointers and ggml enums inside it", () => {
    const leaks = all.filter((i) => i.to === "ggml" && !GGML_PUBLIC.includes(relative("ggml", i.target)));
    expect(leaks.map(describeEdge)).toEqual([]);
  });
});
