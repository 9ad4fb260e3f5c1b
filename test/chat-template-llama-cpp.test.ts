import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AttributeSchema } from "../src/data/attributes.js";
import { jinjaChatTemplate } from "../src/data/chat-template.js";
import { packageDir } from "../src/ggml/native.js";
import {
  bySchema,
  errorCases,
  generationSuffix,
  type MatchCase,
  matchCases,
  type RenderCase,
  steerlmPrompt,
  type WireMessage,
  wireCases,
} from "./chat-template-cases.js";
import { repoRoot, tempDir } from "./helpers.js";

/**
 * The chat template in llama.cpp's own Jinja engine and chat code (common/jinja, common/chat.cpp), as
 * llama-server runs them: test/llama-cpp-chat.cpp is built against node-llama-cpp's prebuilt
 * libllama-common.so and the headers of the llama.cpp source it ships.
 */
const BUNDLE = join(repoRoot, "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");
const BIN_PKG = packageDir("@node-llama-cpp/linux-x64");
const BINS = BIN_PKG && join(BIN_PKG, "bins", "linux-x64");
const have = (cmd: string) => spawnSync(cmd, ["--version"]).status === 0;
const missing = [
  process.platform === "linux" && process.arch === "x64" ? null : "a linux-x64 machine",
  have("g++") ? null : "g++",
  have("git") ? null : "git",
  existsSync(BUNDLE) ? null : BUNDLE,
  BINS && existsSync(join(BINS, "libllama-common.so"))
    ? null
    : "@node-llama-cpp/linux-x64's libllama-common.so",
].filter((m): m is string => m !== null);
if (missing.length > 0) {
  process.stderr.write(
    `\n*** missing ${missing.join(", ")}: the chat template is NOT checked in llama.cpp's engine (SKIPPED) ***\n\n`,
  );
}

interface Result {
  prompt?: string;
  generation_prompt?: string;
  content?: string;
  error?: string;
}

const OUTPUT = "Sure, here it is.";

describe.skipIf(missing.length > 0)("the chat template in llama.cpp (llama-server's chat code)", () => {
  let dir: ReturnType<typeof tempDir>;
  let exe: string;

  beforeAll(() => {
    dir = tempDir("steerlm-llama-chat-");
    exe = join(dir.path, "llama-cpp-chat");
    const src = join(dir.path, "llama.cpp");
    const run = (cmd: string, args: string[]) => {
      const r = spawnSync(cmd, args, { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
    };
    // Only the headers: the library is node-llama-cpp's prebuilt one, built from this same source.
    run("git", ["clone", "--quiet", "--no-checkout", BUNDLE, src]);
    run("git", [
      "-C",
      src,
      "-c",
      "advice.detachedHead=false",
      "checkout",
      "--quiet",
      "HEAD",
      "--",
      "common",
      "include",
      "ggml/include",
    ]);
    run("g++", [
      "-std=c++17",
      ...["common", "include", "ggml/include"].map((d) => `-I${join(src, d)}`),
      join(repoRoot, "test", "llama-cpp-chat.cpp"),
      "-o",
      exe,
      `-L${BINS}`,
      "-l:libllama-common.so",
      `-Wl,-rpath,${BINS}`,
    ]);
  });
  afterAll(() => dir?.cleanup());

  /** One llama-server chat request per case (a body as a client sends it), one process per schema. */
  function serve(cases: RenderCase[]): { caps: Record<string, boolean>; results: Result[] } {
    const results: Result[] = new Array(cases.length);
    let caps: Record<string, boolean> = {};
    for (const [schema, idx] of bySchema(cases)) {
      const requests = idx.map((i) => {
        const c = cases[i] as RenderCase;
        const kwargs =
          c.attributes === undefined ? {} : { chat_template_kwargs: { attributes: c.attributes } };
        return {
          body: { messages: c.messages, add_generation_prompt: c.addGenerationPrompt, ...kwargs },
          output: OUTPUT,
        };
      });
      const input = JSON.stringify({
        template: jinjaChatTemplate(schema),
        bos_token: "<s>",
        eos_token: "</s>",
        requests,
      });
      const r = spawnSync(exe, [], { input, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
      if (r.status !== 0) throw new Error(`llama-cpp-chat failed (${r.status}): ${r.stderr}`);
      const out = JSON.parse(r.stdout) as { caps: Record<string, boolean>; results: Result[] };
      caps = out.caps;
      idx.forEach((i, k) => {
        results[i] = out.results[k] as Result;
      });
    }
    return { caps, results };
  }

  it("sees a template that takes string contents and system messages", () => {
    const { caps } = serve(wireCases().slice(0, 1));
    expect(caps).toMatchObject({
      supports_string_content: true,
      supports_system_role: true,
      supports_tools: false,
    });
  });

  it("renders steerlm's prompt byte for byte, and hands the model's output back as the content", () => {
    // llama.cpp joins the text parts of a list content with "\n" before rendering (checked below).
    const cases = [...matchCases(), ...wireCases()].filter(
      (c) =>
        c.addGenerationPrompt && !c.messages.some((m) => Array.isArray(m.content) && m.content.length > 1),
    );
    const { results } = serve(cases);
    const want = (c: MatchCase) => ({
      name: c.name,
      prompt: c.expected,
      generation_prompt: generationSuffix(c.schema, (c.attributes ?? {}) as Record<string, number>).slice(
        "<extra_id_1>".length,
      ),
      content: OUTPUT,
    });
    expect(cases.map((c, i) => ({ name: c.name, ...results[i] }))).toEqual(cases.map(want));
  });

  it("continues a trailing assistant message (llama-server's prefill) from steerlm's prompt", () => {
    // (Without the conversations whose second system message would then come last: steerlm refuses those.)
    const cases = matchCases().filter((c) => !c.addGenerationPrompt && c.messages.at(-2)?.role === "user");
    const { results } = serve(cases);
    expect(cases.map((c, i) => ({ name: c.name, prompt: results[i]?.prompt }))).toEqual(
      cases.map((c) => {
        const last = c.messages[c.messages.length - 1] as WireMessage;
        return {
          name: c.name,
          prompt: steerlmPrompt(c.schema, c.messages.slice(0, -1), c.attributes) + last.content,
        };
      }),
    );
  });

  it("joins the text parts of a list content with a newline before the template sees them", () => {
    const schema = matchCases()[0]?.schema as AttributeSchema;
    const parts = [
      { type: "text", text: "a" },
      { type: "text", text: "b" },
    ];
    const { results } = serve([
      { name: "parts", schema, messages: [{ role: "user", content: parts }], addGenerationPrompt: true },
    ]);
    expect(results[0]?.prompt).toBe(steerlmPrompt(schema, [{ role: "user", content: "a\nb" }]));
  });

  it("refuses what steerlm refuses, attribute errors through the template's raise_exception", () => {
    // llama-server prefills a trailing assistant message, and makes a null content an empty one.
    const llamaAccepts = new Set(["an assistant message last", "null content"]);
    const cases = errorCases().filter((c) => !llamaAccepts.has(c.name));
    const { results } = serve(cases);
    cases.forEach((c, i) => {
      const error = results[i]?.error;
      expect(error, c.name).toBeDefined();
      // Malformed messages may be refused by the server's own message parser first.
      if (c.attributes !== undefined || error?.includes("Jinja Exception")) {
        for (const m of c.mentions) expect(error, c.name).toContain(m);
      }
    });
  });
});
