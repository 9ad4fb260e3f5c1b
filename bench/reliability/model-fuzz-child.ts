import { readFileSync } from "node:fs";
import { readGguf, readTensorBytes } from "../../src/gguf/reader.js";
import { readSafetensorsBytes, readSafetensorsHeader } from "../../src/interop/safetensors.js";
import { InputError } from "../../src/util/errors.js";

// The model-file fuzz's reader process (its parent watches time and memory, and kills it if a file hangs):
// reads each file named in the list it is given as steerlm does, header and every tensor's bytes, and prints
// one JSON line per file: accepted, a located error (an InputError at that file), or anything else.

export type Outcome = "accepted" | "located" | "unlocated" | "crash";

export interface FileReport {
  file: string;
  outcome: Outcome;
  ms: number;
  rssMb: number;
  message?: string;
}

async function readModel(path: string): Promise<void> {
  if (path.endsWith(".gguf")) {
    const f = await readGguf(path);
    for (const t of f.tensors) await readTensorBytes(f, t.name);
  } else {
    const f = await readSafetensorsHeader(path);
    for (const t of f.tensors.values()) await readSafetensorsBytes(t);
  }
}

const files = JSON.parse(readFileSync(process.argv[2] as string, "utf8")) as string[];
for (const file of files) {
  const t0 = performance.now();
  let outcome: Outcome = "accepted";
  let message: string | undefined;
  try {
    await readModel(file);
  } catch (err) {
    message = err instanceof Error ? err.message : String(err);
    if (err instanceof InputError) outcome = err.place.file === file ? "located" : "unlocated";
    else {
      outcome = "crash";
      message = err instanceof Error ? (err.stack ?? message) : message;
    }
  }
  const report: FileReport = {
    file,
    outcome,
    ms: Math.round(performance.now() - t0),
    rssMb: Math.round(process.memoryUsage().rss / 2 ** 20),
    message: message?.slice(0, 500),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
