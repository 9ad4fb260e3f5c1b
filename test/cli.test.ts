import { describe, expect, it } from "vitest";
import { runCli } from "./helpers.js";

describe("steerlm CLI", () => {
  it("prints help with every command group and exits 0", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: steerlm");
  });

  it("rejects an unknown command with exit 1 and a hint", async () => {
    const r = await runCli(["no-such-command"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown command/);
  });
});
