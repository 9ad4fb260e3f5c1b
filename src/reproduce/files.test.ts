import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { readRows, rowLine } from "./judge.js";
import { ReproduceState, STATE_FILE } from "./state.js";

const tmp = tempDir("steerlm-reproduce-files-");
afterAll(() => tmp.cleanup());

describe("a reproduce run's own files, damaged", () => {
  it("a generation row that is not JSON is named by file and line", () => {
    const path = join(tmp.path, "rows.jsonl");
    const row = { system: "s", prompt: "p", response: "r", values: "humor:4", arm: "acsft" };
    writeFileSync(path, `${rowLine(row as never)}\n{"conversations": [\n`);
    expect(() => readRows(path)).toThrow(`${path}:2: not a row this run wrote`);
    writeFileSync(path, `${rowLine(row as never)}\n`);
    expect(readRows(path)).toEqual([row]);
  });

  it("a state file that is not JSON is refused with a way on, not a SyntaxError", () => {
    writeFileSync(join(tmp.path, STATE_FILE), '{"format": "steerlm-reproduce-st');
    expect(() => new ReproduceState(tmp.path, { seeds: [1] }, true)).toThrow(
      `${join(tmp.path, STATE_FILE)}: is damaged`,
    );
  });
});
