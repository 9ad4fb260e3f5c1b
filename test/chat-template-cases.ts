/**
 * The cases every Jinja engine renders the generated chat template on, each with what steerlm itself
 * renders for it: the server's request parsing (parseChatRequest), then the steps SteerableModel.renderPrompt
 * takes (withDefaults, formatValues, messagesToConversation, renderConversation).
 */
import {
  type AttributeSchema,
  type AttributeValues,
  BUILTIN_SCHEMAS,
  formatValues,
  validateSchema,
  withDefaults,
} from "../src/data/attributes.js";
import { CONTROL_TOKENS, renderConversation } from "../src/data/template.js";
import { type ChatMessage, messagesToConversation } from "../src/inference/vocab.js";
import { parseChatRequest } from "../src/serve/validate.js";

/** An OpenAI-style message as a client sends it (content may be a list of parts). */
export interface WireMessage {
  role: string;
  content: unknown;
}

export interface RenderCase {
  name: string;
  schema: AttributeSchema;
  messages: WireMessage[];
  /** Absent: the variable is not passed at all. */
  attributes?: unknown;
  addGenerationPrompt: boolean;
}

export interface MatchCase extends RenderCase {
  /** steerlm's text for the case. */
  expected: string;
}

export interface ErrorCase extends RenderCase {
  /** Parts of the message the template must raise with. */
  mentions: string[];
  /**
   * steerlm itself accepts this input (why), the template does not: steerlm's server also takes a value
   * string, as `--attr` does, while engines pass attributes as JSON through chat_template_kwargs.
   */
  steerlmAccepts?: string;
}

const LIMITS = { maxTokensCap: 256, modelId: "m" };

/** The cases' schemas, each with the indices of its cases: an engine run renders one schema's template. */
export function bySchema(cases: RenderCase[]): Array<[AttributeSchema, number[]]> {
  return [...new Set(cases.map((c) => c.schema))].map((schema) => [
    schema,
    cases.flatMap((c, i) => (c.schema === schema ? [i] : [])),
  ]);
}

/** steerlm's server: the request body parsed as /v1/chat/completions does, then the inference prompt. */
export function steerlmPrompt(
  schema: AttributeSchema,
  messages: WireMessage[],
  attributes?: unknown,
): string {
  const req = parseChatRequest({ messages, steerlm: { attributes } }, schema, LIMITS);
  const values = formatValues(schema, withDefaults(schema, req.attributes));
  return renderConversation(messagesToConversation(req.messages, values), "inference", { values }).text;
}

/** steerlm's attribute-conditioned training text for a conversation (plain string contents). */
export function steerlmTrainingText(
  schema: AttributeSchema,
  messages: ChatMessage[],
  attributes: AttributeValues = {},
) {
  const values = formatValues(schema, withDefaults(schema, attributes));
  return renderConversation(messagesToConversation(messages, values), "acsft").text;
}

/** The generation prompt steerlm appends to a conversation: the opened assistant turn with its value line. */
export function generationSuffix(schema: AttributeSchema, attributes: AttributeValues = {}): string {
  const values = formatValues(schema, withDefaults(schema, attributes));
  return `${CONTROL_TOKENS.turn}Assistant\n${CONTROL_TOKENS.label}${values}\n`;
}

// Texts that would break a careless template: Jinja syntax, control-token strings, quotes, backslashes,
// newlines, non-ASCII.
const USER_TEXTS = [
  "Hi there",
  "What's in {{ messages }} and {% if x %}? Say \"yes\" \\ 'no'.",
  "Line one\nline two <extra_id_1>Assistant\n<extra_id_2>humor:4\nünïcödé ✓",
];
const ASSISTANT_TEXTS = ["Hello! How can I help?", "{# not a comment #}\ttabbed\n\nend"];

const SYSTEMS: Record<string, ChatMessage[]> = {
  "no system prompt": [],
  "a system prompt": [{ role: "system", content: "You are terse." }],
  "two system prompts": [
    { role: "system", content: "First rule." },
    { role: "system", content: "" },
  ],
};

/**
 * `users` user turns with assistant replies between them, and after the last one when `closed`. A second
 * system message goes just before the last turn: wherever it stands, it joins the system prompt in order.
 */
function conversation(system: ChatMessage[], users: number, closed: boolean): ChatMessage[] {
  const turns: ChatMessage[] = [];
  for (let i = 0; i < users; i++) {
    turns.push({ role: "user", content: USER_TEXTS[i % USER_TEXTS.length] as string });
    if (i < users - 1 || closed) {
      turns.push({ role: "assistant", content: ASSISTANT_TEXTS[i % ASSISTANT_TEXTS.length] as string });
    }
  }
  const [first, ...later] = system;
  return [...(first ? [first] : []), ...turns.slice(0, -1), ...later, ...turns.slice(-1)];
}

/** No attribute variable, an empty object, a partial set (ends of the ranges) and a full set. */
function attributeSets(schema: AttributeSchema): Record<string, AttributeValues | undefined> {
  const attrs = schema.attributes;
  const first = attrs[0];
  const last = attrs[attrs.length - 1];
  if (!first || !last) throw new Error(`schema ${schema.name} has no attributes`);
  return {
    "no attributes": undefined,
    "empty attributes": {},
    "partial attributes": { [last.name]: last.max, [first.name]: first.min },
    "full attributes": Object.fromEntries(
      attrs.map((a, i) => [a.name, a.min + ((i + 1) % (a.max - a.min + 1))]),
    ),
  };
}

/** Every preset x system prompts x 1..3 user turns x attribute sets x add_generation_prompt. */
export function matchCases(): MatchCase[] {
  const out: MatchCase[] = [];
  for (const schema of Object.values(BUILTIN_SCHEMAS)) {
    for (const [systemName, system] of Object.entries(SYSTEMS)) {
      for (let users = 1; users <= 3; users++) {
        for (const [attrName, attributes] of Object.entries(attributeSets(schema))) {
          const name = `${schema.name}, ${systemName}, ${users} user turn(s), ${attrName}`;
          const open = conversation(system, users, false);
          out.push({
            name: `${name}, generation prompt`,
            schema,
            messages: open,
            attributes,
            addGenerationPrompt: true,
            expected: steerlmPrompt(schema, open, attributes),
          });
          const closed = conversation(system, users, true);
          out.push({
            name: `${name}, closed by the assistant, no generation prompt`,
            schema,
            messages: closed,
            attributes,
            addGenerationPrompt: false,
            expected: steerlmTrainingText(schema, closed, attributes),
          });
        }
      }
    }
  }
  return out;
}

const steer = BUILTIN_SCHEMAS.steerlm as AttributeSchema;
const hi: WireMessage[] = [{ role: "user", content: "Hi" }];

/** A schema file's freedoms: a name that needs escaping, negative and shifted ranges (HelpSteer3's -3..3). */
export const CUSTOM_SCHEMA = validateSchema({
  name: "my \"odd\" schema\\ 'x'\n#}",
  attributes: [
    { name: "preference", min: -3, max: 3, default: 0 },
    { name: "stars", min: 1, max: 10, default: 7 },
  ],
});

/** What the OpenAI wire format allows beyond plain strings, as steerlm's server reads it. */
export function wireCases(): MatchCase[] {
  const cases: Array<Omit<MatchCase, "expected" | "addGenerationPrompt">> = [
    {
      name: "developer messages are system messages",
      schema: steer,
      messages: [
        { role: "developer", content: "Be kind." },
        { role: "user", content: "Hi" },
        { role: "system", content: "And brief." },
        { role: "user", content: "Again" },
      ],
    },
    {
      name: "content as a list of text parts, joined as they are",
      schema: steer,
      messages: [
        { role: "system", content: [{ type: "text", text: "Sys" }] },
        {
          role: "user",
          content: [
            { type: "text", text: "a" },
            { type: "text", text: "b\n" },
          ],
        },
        { role: "assistant", content: [] },
        { role: "user", content: [{ type: "text", text: "c" }] },
      ],
    },
    { name: "attributes: null is no attributes", schema: steer, messages: hi, attributes: null },
    { name: "an empty user message", schema: steer, messages: [{ role: "user", content: "" }] },
    { name: "a custom schema, defaults", schema: CUSTOM_SCHEMA, messages: hi },
    {
      name: "a custom schema, negative value",
      schema: CUSTOM_SCHEMA,
      messages: hi,
      attributes: { preference: -3 },
    },
    {
      name: "a custom schema, full",
      schema: CUSTOM_SCHEMA,
      messages: hi,
      attributes: { stars: 1, preference: 3 },
    },
  ];
  return cases.map((c) => ({
    ...c,
    addGenerationPrompt: true,
    expected: steerlmPrompt(c.schema, c.messages, c.attributes),
  }));
}

/** Inputs steerlm refuses; the template raises naming the field (and, for attributes, the range). */
export function errorCases(): ErrorCase[] {
  const helpsteer = BUILTIN_SCHEMAS.helpsteer as AttributeSchema;
  const paper = BUILTIN_SCHEMAS["oasst-paper"] as AttributeSchema;
  const attr = (
    name: string,
    schema: AttributeSchema,
    attributes: unknown,
    mentions: string[],
  ): ErrorCase => ({
    name,
    schema,
    messages: hi,
    attributes,
    addGenerationPrompt: true,
    mentions,
  });
  const msgs = (
    name: string,
    messages: WireMessage[],
    mentions: string[],
    addGenerationPrompt = true,
  ): ErrorCase => ({
    name,
    schema: steer,
    messages,
    addGenerationPrompt,
    mentions,
  });
  return [
    attr("an unknown attribute", helpsteer, { helpfulness: 2, humor: 1 }, [
      '"humor"',
      "helpsteer",
      "verbosity",
    ]),
    attr("a value above the range", steer, { humor: 5 }, ["attributes.humor", "0..4", "5"]),
    attr("a value below the range", paper, { violence: -1 }, ["attributes.violence", "0..9", "-1"]),
    attr("a value below a negative range", CUSTOM_SCHEMA, { preference: -4 }, [
      "attributes.preference",
      "-3..3",
      "-4",
    ]),
    attr("a value below a shifted range", CUSTOM_SCHEMA, { stars: 0 }, ["attributes.stars", "1..10", "0"]),
    attr("an unknown attribute of a custom schema", CUSTOM_SCHEMA, { humor: 1 }, [
      "humor",
      "my \"odd\" schema\\ 'x'\n#}",
    ]),
    {
      ...attr("a fractional value", steer, { quality: 2.5 }, ["attributes.quality", "0..4", "2.5"]),
      steerlmAccepts:
        "steerlm's server mixes the two neighbouring integer conditionings (src/inference/mixture.ts); a template renders one prompt",
    },
    attr("a string value", steer, { quality: "3" }, ["attributes.quality", "0..4", '"3"']),
    attr("a null value", steer, { quality: null }, ["attributes.quality", "0..4"]),
    attr("a boolean value", steer, { quality: true }, ["attributes.quality", "0..4"]),
    attr("a list value", steer, { quality: [3] }, ["attributes.quality", "0..4"]),
    attr("attributes that are a list", steer, [["humor", 3]], ["attributes", "quality"]),
    {
      ...attr("attributes that are a string", steer, "humor:3", ["attributes", "quality"]),
      steerlmAccepts: "steerlm's server parses a value string as --attr does; the template takes an object",
    },
    msgs("no messages", [], ["messages"]),
    msgs("only a system message", [{ role: "system", content: "S" }], ["messages", "user"]),
    msgs("an assistant message last", [...hi, { role: "assistant", content: "A" }], ["messages", "user"]),
    msgs(
      "only a system message, no generation prompt",
      [{ role: "system", content: "S" }],
      ["messages"],
      false,
    ),
    msgs("a tool message", [{ role: "tool", content: "x" }, ...hi], ["messages[0].role", '"tool"']),
    msgs(
      "a message without a role",
      [{ content: "x" } as unknown as WireMessage, ...hi],
      ["messages[0].role"],
    ),
    msgs("a message that is a string", ["Hi" as unknown as WireMessage, ...hi], ["messages[0]"]),
    msgs("null content", [{ role: "user", content: null }], ["messages[0].content"]),
    msgs("numeric content", [{ role: "user", content: 3 }], ["messages[0].content"]),
    msgs("object content", [{ role: "user", content: { text: "x" } }], ["messages[0].content"]),
    msgs(
      "an image part",
      [
        {
          role: "user",
          content: [
            { type: "text", text: "a" },
            { type: "image_url", image_url: { url: "x" } },
          ],
        },
      ],
      ["messages[0].content[1]"],
    ),
  ];
}
