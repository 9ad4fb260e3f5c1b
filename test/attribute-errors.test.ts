import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAttributes } from "../src/data/attributes.js";
import { SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { InputError } from "../src/util/errors.js";
import { haveSharedData, runCli } from "./helpers.js";
import { TINY_RANDOM } from "./serve-fixture.js";

/**
 * One bad attribute value, one message: the library function, `SteerableModel.generate`, `steerlm generate
 * --attr`, `steerlm chat`'s `/set` and the HTTP server's `steerlm.attributes` all take the same value
 * string and refuse it in the same words; only where it was given (the prefix) differs. All of them take
 * fractional values (mixed at inference: src/inference/mixture.ts), so a fraction is refused only out of
 * range.
 */

// biome-ignore format: one bad input per line reads as a table
const BAD: Array<{ name: string; input: string; field: string; what: string; hint?: string }> = [
  { name: "unknown name", input: "humour=3", field: ".humour", what: 'unknown attribute "humour" for schema steerlm', hint: "known: quality, toxicity, humor, creativity, helpfulness, correctness, coherence, complexity, verbosity" },
  { name: "out of range", input: "humor=9", field: ".humor", what: "9 is out of range 0..4" },
  { name: "not a number", input: "humor=2.5.1", field: ".humor", what: 'expected a number, got "2.5.1"' },
  { name: "fraction out of range", input: "humor=4.5", field: ".humor", what: "4.5 is out of range 0..4" },
  { name: "malformed a=b,c", input: "humor=3,verbosity", field: "", what: '"verbosity" is not key=value' },
  { name: "duplicate", input: "humor=1,humor=2", field: ".humor", what: 'duplicate attribute "humor"' },
];

/** The message the shared function gives for `input` given at `where`, with its hint. */
function libraryError(input: string, where: string): InputError {
  try {
    parseAttributes(BUILTIN_STEERLM, input, { field: where }, { fractions: true });
  } catch (err) {
    if (err instanceof InputError) return err;
    throw err;
  }
  throw new Error(`${input} was accepted`);
}

const withHint = (e: InputError) => (e.hint ? `${e.message} (${e.hint})` : e.message);

let BUILTIN_STEERLM: SteerableModel["schema"];
let model: SteerableModel;
let server: SteerServer;

beforeAll(async () => {
  if (!haveSharedData) return;
  model = await SteerableModel.load({ modelPath: TINY_RANDOM });
  BUILTIN_STEERLM = model.schema;
  server = await startServer({ model, port: 0 });
});

afterAll(async () => {
  await server?.close();
  await model?.dispose();
});

describe.skipIf(!haveSharedData)("the same bad attribute value, the same message everywhere", () => {
  for (const b of BAD) {
    it(`${b.name}: the library function, SteerableModel and the server`, async () => {
      const lib = libraryError(b.input, "attributes");
      expect([lib.what, lib.hint, lib.place.field]).toEqual([b.what, b.hint, `attributes${b.field}`]);

      const err = await model
        .generate({ messages: [{ role: "user", content: "hi" }], attributes: b.input, maxTokens: 1 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).message).toBe(lib.message);
      expect((err as InputError).hint).toBe(lib.hint);

      const res = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          messages: [{ role: "user", content: "hi" }],
          steerlm: { attributes: b.input },
        }),
      });
      expect(res.status).toBe(400);
      const { error } = (await res.json()) as { error: { message: string; param: string } };
      const api = libraryError(b.input, "steerlm.attributes");
      expect(error.message).toBe(withHint(api));
      expect(error.param).toBe(`steerlm.attributes${b.field}`);
    });
  }

  it("steerlm generate --attr: the same messages, at --attr", async () => {
    for (const b of BAD) {
      const r = await runCli(["--quiet", "generate", "-m", TINY_RANDOM, "--attr", b.input, "hi"]);
      expect(r.code).toBe(1);
      const cli = libraryError(b.input, "--attr");
      expect(cli.what).toBe(b.what);
      expect(r.stderr).toBe(`steerlm: ${cli.message}\n${cli.hint ? `hint: ${cli.hint}\n` : ""}`);
    }
  }, 120_000);

  it("steerlm chat's /set: the same messages, at /set, and the chat goes on", async () => {
    const input = `${BAD.map((b) => `/set ${b.input}`).join("\n")}\n/show\n/quit\n`;
    const r = await runCli(["chat", "-m", TINY_RANDOM, "--max-tokens", "2"], { input });
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    BAD.forEach((b, i) => {
      const chat = libraryError(b.input, "/set");
      expect(chat.what).toBe(b.what);
      expect(lines[i]).toBe(`error: ${withHint(chat)}`);
    });
    // Nothing bad was applied.
    expect(lines[BAD.length]).toBe(
      "quality:4,toxicity:0,humor:0,creativity:0,helpfulness:4,correctness:4,coherence:4,complexity:4,verbosity:4",
    );
  }, 60_000);
});
