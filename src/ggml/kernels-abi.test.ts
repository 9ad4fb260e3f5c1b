import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { KERNELS_ABI } from "./native-kernels.js";

// The loader refuses a kernel library that assumes another ggml tensor layout, type ids or ISA levels
// than this side knows, by name, before it calls any kernel: a stub library reporting each slot off by one.
describe("the kernel library's ABI check", () => {
  const tmp = tempDir("steerlm-abi-");
  afterAll(() => tmp.cleanup());
  const dist = fileURLToPath(new URL("../../dist/ggml/native-kernels.js", import.meta.url));

  const load = (words: readonly number[]) => {
    const src = join(tmp.path, "stub.c");
    const lib = join(tmp.path, `stub-${words.join("-")}.so`);
    writeFileSync(
      src,
      `#include <stdint.h>\nvoid steerlm_kernels_abi(int64_t *out) { const int64_t w[] = {${words.join(", ")}};` +
        ` for (int i = 0; i < ${words.length}; i++) out[i] = w[i]; }\n`,
    );
    const cc = spawnSync("cc", ["-shared", "-fPIC", "-o", lib, src], { encoding: "utf8" });
    expect(cc.status, cc.stderr).toBe(0);
    const code = `const { loadKernels } = await import(${JSON.stringify(dist)}); loadKernels();`;
    return spawnSync(process.execPath, ["--input-type=module", "-e", code], {
      encoding: "utf8",
      env: { ...process.env, STEERLM_KERNELS: lib },
    });
  };

  it("names the library and what differs, for every slot", () => {
    for (let i = 0; i < KERNELS_ABI.length; i++) {
      const words = KERNELS_ABI.map((w, j) => (j === i ? w + 1 : w));
      const r = load(words);
      expect(r.status, `slot ${i}`).toBe(1);
      expect(r.stderr).toContain(
        `stub-${words.join("-")}.so was built for another ggml tensor layout or kernel set`,
      );
      expect(r.stderr).toContain(`(${words.join(",")}, expected ${KERNELS_ABI.join(",")})`);
    }
    // the library it checks against passes this check (and then lacks the kernels: a different refusal)
    const same = load(KERNELS_ABI);
    expect(same.stderr).not.toContain("was built for another");
    expect(same.status).toBe(1);
  });
});
