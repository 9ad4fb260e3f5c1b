import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AttributeSchema, BUILTIN_SCHEMAS } from "../src/data/attributes.js";
import { type ChatTemplateOptions, jinjaChatTemplate } from "../src/data/chat-template.js";
import { type ChatMessage, SteerableModel } from "../src/inference/index.js";
import {
  bySchema,
  errorCases,
  generationSuffix,
  type MatchCase,
  matchCases,
  type RenderCase,
  steerlmPrompt,
  steerlmTrainingText,
  type WireMessage,
  wireCases,
} from "./chat-template-cases.js";
import { haveSharedData, repoRoot } from "./helpers.js";
import { TINY_RANDOM } from "./serve-fixture.js";

type Rendering = { text: string } | { error: string };

const BOS = "<s>";

function variables(c: RenderCase): Record<string, unknown> {
  return {
    messages: c.messages,
    add_generation_prompt: c.addGenerationPrompt,
    bos_token: BOS,
    ...(c.attributes === undefined ? {} : { attributes: c.attributes }),
  };
}

/** @huggingface/jinja's own raise_exception throws a plain Error (it cannot be replaced). */
function renderHf(c: RenderCase, opts: ChatTemplateOptions = {}): Rendering {
  const template = new Template(jinjaChatTemplate(c.schema, opts));
  try {
    return { text: template.render(variables(c)) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const PYTHON = "/usr/bin/python3";
const haveJinja2 = spawnSync(PYTHON, ["-c", "import jinja2"]).status === 0;
if (!haveJinja2) {
  process.stderr.write(
    "\n*** python3-jinja2 is missing (apt-get install -y python3-jinja2): the Python Jinja2 renderings are SKIPPED ***\n\n",
  );
}

type Jinja2Rendering = Rendering & { plain?: string };

/** Renders through Python's Jinja2 (test/jinja2-render.py), one process per schema. */
function renderJinja2(cases: RenderCase[], extraArgs: string[] = []): Jinja2Rendering[] {
  const out: Jinja2Rendering[] = new Array(cases.length);
  for (const [schema, idx] of bySchema(cases)) {
    const input = JSON.stringify({
      template: jinjaChatTemplate(schema),
      cases: idx.map((i) => variables(cases[i] as RenderCase)),
    });
    const r = spawnSync(PYTHON, [join(repoRoot, "test", "jinja2-render.py"), ...extraArgs], {
      input,
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.status !== 0) throw new Error(`jinja2-render.py failed (${r.status}): ${r.stderr}`);
    const results = JSON.parse(r.stdout) as Jinja2Rendering[];
    idx.forEach((i, k) => {
      out[i] = results[k] as Jinja2Rendering;
    });
  }
  return out;
}

const textOf = (r: Jinja2Rendering): Rendering => ("text" in r ? { text: r.text } : r);
const named = (cases: RenderCase[], results: Rendering[]) =>
  cases.map((c, i) => ({ name: c.name, ...results[i] }));
const wanted = (cases: MatchCase[]) => cases.map((c) => ({ name: c.name, text: c.expected }));

describe("the Jinja chat template renders exactly steerlm's prompt", () => {
  const cases = [...matchCases(), ...wireCases()];

  it("covers every preset, with and without system prompts, 1..3 user turns and partial / full attributes", () => {
    expect(new Set(matchCases().map((c) => c.schema.name))).toEqual(new Set(Object.keys(BUILTIN_SCHEMAS)));
    expect(cases.length).toBe(4 * 3 * 3 * 4 * 2 + wireCases().length);
  });

  it("in @huggingface/jinja", () => {
    expect(
      named(
        cases,
        cases.map((c) => renderHf(c)),
      ),
    ).toEqual(wanted(cases));
  });

  it.skipIf(!haveJinja2)("in Python's Jinja2 as transformers sets it up, with or without trim_blocks", () => {
    const results = renderJinja2(cases);
    expect(named(cases, results.map(textOf))).toEqual(wanted(cases));
    expect(results.map((r) => r.plain)).toEqual(results.map((r) => ("text" in r ? r.text : undefined)));
  });

  it.skipIf(!haveJinja2)("in Python's Jinja2 when the attribute values arrive as floats (3.0)", () => {
    expect(named(cases, renderJinja2(cases, ["--ints-as-floats"]).map(textOf))).toEqual(wanted(cases));
  });

  it("starts with bos_token when the model's tokenizer prepends one", () => {
    const c = cases[0] as MatchCase;
    expect(renderHf(c, { bosToken: true })).toEqual({ text: BOS + c.expected });
  });
});

describe("the Jinja chat template without a generation prompt", () => {
  const schema = BUILTIN_SCHEMAS.oasst as AttributeSchema;
  const attributes = { humor: 3 };
  const base = { name: "", schema, attributes, addGenerationPrompt: false };

  it("ends a conversation that ends with the user where the generation prompt would start", () => {
    // llama.cpp renders every request this way too, to find the generation prompt.
    for (const messages of [
      [{ role: "user", content: "Hi" }],
      [
        { role: "system", content: "S" },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello" },
        { role: "user", content: "Again" },
      ],
    ]) {
      expect(renderHf({ ...base, messages })).toEqual({
        text:
          steerlmPrompt(schema, messages, attributes).slice(0, -generationSuffix(schema, attributes).length) +
          "<extra_id_1>",
      });
    }
    // With an earlier assistant turn it is also steerlm's training text.
    const messages = [
      { role: "user" as const, content: "Hi" },
      { role: "assistant" as const, content: "Hello" },
      { role: "user" as const, content: "Again" },
    ];
    expect(renderHf({ ...base, messages })).toEqual({
      text: steerlmTrainingText(schema, messages, attributes),
    });
  });

  it("continues a final assistant message as vLLM's continue_final_message cuts it", () => {
    const partial = "Once upon";
    const messages: WireMessage[] = [
      { role: "user", content: "Tell me a story" },
      { role: "assistant", content: partial },
    ];
    const rendered = renderHf({ ...base, messages });
    if (!("text" in rendered)) throw new Error(rendered.error);
    const cut = rendered.text.slice(0, rendered.text.lastIndexOf(partial) + partial.length);
    expect(cut).toBe(steerlmPrompt(schema, messages.slice(0, 1), attributes) + partial);
  });
});

describe("the Jinja chat template refuses what steerlm refuses", () => {
  const cases = errorCases();

  it("steerlm refuses every one of these inputs (but the documented exceptions)", () => {
    for (const c of cases.filter((x) => x.steerlmAccepts === undefined)) {
      const refuse = () =>
        c.addGenerationPrompt
          ? steerlmPrompt(c.schema, c.messages, c.attributes)
          : steerlmTrainingText(c.schema, c.messages as ChatMessage[]);
      expect(refuse, c.name).toThrow();
    }
  });

  const check = (results: Rendering[]) => {
    cases.forEach((c, i) => {
      const r = results[i] as Rendering;
      expect("error" in r, `${c.name}: ${JSON.stringify(r)}`).toBe(true);
      for (const m of c.mentions) expect((r as { error: string }).error, c.name).toContain(m);
    });
  };

  it("in @huggingface/jinja, through raise_exception, naming the field and the range", () => {
    check(cases.map((c) => renderHf(c)));
  });

  it.skipIf(!haveJinja2)(
    "in Python's Jinja2, through raise_exception, naming the field and the range",
    () => {
      check(renderJinja2(cases));
    },
  );
});

describe.skipIf(!haveSharedData)("the reference these tests use is steerlm's own renderer", () => {
  let model: SteerableModel;
  beforeAll(async () => {
    model = await SteerableModel.load({ modelPath: TINY_RANDOM, schema: "helpsteer" });
  });
  afterAll(() => model.dispose());

  it("steerlmPrompt equals SteerableModel.renderPrompt", () => {
    const schema = BUILTIN_SCHEMAS.helpsteer as AttributeSchema;
    for (const c of matchCases().filter((m) => m.schema === schema && m.addGenerationPrompt)) {
      const attributes = (c.attributes ?? {}) as Record<string, number>;
      const messages = c.messages as ChatMessage[];
      expect(model.renderPrompt({ messages, attributes }).text, c.name).toBe(c.expected);
    }
  });
});
