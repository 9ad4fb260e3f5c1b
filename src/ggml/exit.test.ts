import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// A process that leaves a multi-threaded backend running (an error path, process.exit) must still exit
// with its own status: ggml's pool threads used to crash it at teardown (139).
describe("Backend at process exit", () => {
  const dist = fileURLToPath(new URL("../../dist/ggml/backend.js", import.meta.url));
  for (const how of ["process.exit(3)", "throw new Error('boom')"])
    it(`an unfreed 2-thread backend does not crash the exit (${how})`, () => {
      const code = `const { Backend } = await import(${JSON.stringify(dist)}); new Backend(2); ${how};`;
      for (let i = 0; i < 3; i++) {
        const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8" });
        expect(r.signal, r.stderr).toBeNull();
        expect(r.status, r.stderr).toBe(how.startsWith("process") ? 3 : 1);
      }
    });
});
