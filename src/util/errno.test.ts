import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { userFileError } from "./errno.js";
import { InputError } from "./errors.js";

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

describe("userFileError", () => {
  it("turns a real ENOSPC (/dev/full) into a plain, located message with a hint", () => {
    const err = userFileError(
      thrown(() => writeFileSync("/dev/full", "x")),
      "out.jsonl",
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toBe("out.jsonl: ENOSPC: no space left on the device");
    expect((err as InputError).hint).toBe("free some space, then run the command again");
  });

  it("locates an error at the path Node names when no file is given", () => {
    const err = userFileError(thrown(() => writeFileSync("/", "x")));
    expect((err as InputError).message).toBe("/: EISDIR: is a folder, not a file");
  });

  it("leaves everything else as it is", () => {
    const bug = new TypeError("x is undefined");
    expect(userFileError(bug)).toBe(bug);
    const net = Object.assign(new Error("reset"), { code: "ECONNRESET" });
    expect(userFileError(net, "f")).toBe(net);
    const user = new InputError("bad");
    expect(userFileError(user, "f")).toBe(user);
  });
});
