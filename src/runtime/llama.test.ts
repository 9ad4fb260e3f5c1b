import { describe, expect, it } from "vitest";
import { getLlamaRuntime } from "./llama.js";

describe("llama runtime", () => {
  it("loads the prebuilt CPU binaries without building or downloading", async () => {
    const llama = await getLlamaRuntime();
    expect(llama.gpu).toBe(false);
    expect(llama.buildType).toBe("prebuilt");
    expect(await getLlamaRuntime()).toBe(llama);
  });
});
