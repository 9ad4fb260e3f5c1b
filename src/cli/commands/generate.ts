import { createInterface } from "node:readline";
import type { Command } from "commander";
import { type AttributeValues, formatValues, parseValues, withDefaults } from "../../data/attributes.js";
import { type ChatMessage, type SamplingOptions, SteerableModel } from "../../inference/model.js";
import { InputError } from "../../util/errors.js";

interface ModelFlags {
  model: string;
  lora?: string;
  schema?: string;
  attr?: string;
  system?: string;
  maxTokens?: string;
  temperature: string;
  topK?: string;
  topP?: string;
  seed?: string;
  showPrompt?: boolean;
}

export function intOption(text: string, field: string, min: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min)
    throw new InputError(`expected an integer >= ${min}, got ${JSON.stringify(text)}`, { field });
  return Number(text);
}

function numOption(text: string, field: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n))
    throw new InputError(`expected a number, got ${JSON.stringify(text)}`, { field });
  return n;
}

/** `verbosity=4,humor=0` (or `verbosity:4,...`) checked against the model's schema. */
function parseAttrs(model: SteerableModel, text: string | undefined, field: string): AttributeValues {
  if (text === undefined) return {};
  return parseValues(model.schema, text.replaceAll("=", ":"), { field });
}

function withModelOptions(cmd: Command): Command {
  return cmd
    .requiredOption("-m, --model <gguf>", "model file")
    .option("--lora <gguf>", "LoRA adapter applied on top of the model")
    .option("--schema <name|file>", "attribute schema (default: the model's steerlm.schema, else steerlm)")
    .option(
      "-a, --attr <k=v,...>",
      "attribute values, e.g. verbosity=4,humor=0 (others take the schema defaults)",
    )
    .option("--system <text>", "system prompt (default: SteerLM's)")
    .option("--max-tokens <n>", "most tokens to generate (default: 256, or what fits)")
    .option("-t, --temperature <t>", "sampling temperature; 0 is greedy", "0")
    .option("--top-k <k>", "sample from the k most likely tokens")
    .option("--top-p <p>", "nucleus sampling threshold")
    .option("--seed <n>", "sampling seed");
}

function sampling(flags: ModelFlags): SamplingOptions {
  return {
    maxTokens: flags.maxTokens === undefined ? undefined : intOption(flags.maxTokens, "--max-tokens", 0),
    temperature: numOption(flags.temperature, "--temperature"),
    topK: flags.topK === undefined ? undefined : intOption(flags.topK, "--top-k", 0),
    topP: flags.topP === undefined ? undefined : numOption(flags.topP, "--top-p"),
    seed: flags.seed === undefined ? undefined : intOption(flags.seed, "--seed", 0),
  };
}

const load = (flags: ModelFlags) =>
  SteerableModel.load({ modelPath: flags.model, loraPath: flags.lora, schema: flags.schema });

async function readStdin(): Promise<string> {
  let text = "";
  for await (const chunk of process.stdin) text += chunk;
  return text;
}

export function register(program: Command): void {
  withModelOptions(
    program
      .command("generate")
      .description("generate one steered reply to a prompt, streamed to stdout")
      .argument("[prompt]", "the user message; - or nothing reads it from stdin"),
  )
    .option("--show-prompt", "print the rendered prompt to stderr first")
    .action(async (promptArg: string | undefined, flags: ModelFlags) => {
      const prompt = promptArg === undefined || promptArg === "-" ? await readStdin() : promptArg;
      if (prompt.trim() === "") throw new InputError("the prompt is empty", { field: "prompt" });
      const model = await load(flags);
      try {
        const messages: ChatMessage[] = [];
        if (flags.system !== undefined) messages.push({ role: "system", content: flags.system });
        messages.push({ role: "user", content: prompt });
        const attributes = parseAttrs(model, flags.attr, "--attr");
        if (flags.showPrompt) process.stderr.write(model.renderPrompt({ messages, attributes }).text);
        await model.generate({
          messages,
          attributes,
          ...sampling(flags),
          onToken: (t) => process.stdout.write(t),
        });
        process.stdout.write("\n");
      } finally {
        await model.dispose();
      }
    });

  withModelOptions(
    program
      .command("chat")
      .description(
        "interactive steered chat; /set k=v changes attributes between turns (/help lists commands)",
      ),
  ).action(async (flags: ModelFlags) => {
    const model = await load(flags);
    try {
      await chatLoop(model, flags);
    } finally {
      await model.dispose();
    }
  });
}

const HELP = `commands:
  /set k=v,...   change attributes (e.g. /set humor=3,verbosity=1)
  /show          show the attribute values in use
  /reset         forget the conversation (attributes stay)
  /quit          leave (also Ctrl-D)
`;

async function chatLoop(model: SteerableModel, flags: ModelFlags): Promise<void> {
  const tty = Boolean(process.stdin.isTTY);
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty });
  const say = (text: string) => process.stdout.write(text);
  let attributes = withDefaults(model.schema, parseAttrs(model, flags.attr, "--attr"));
  const history: ChatMessage[] =
    flags.system !== undefined ? [{ role: "system", content: flags.system }] : [];
  const opts = sampling(flags);
  if (tty) say(`chatting with ${model.id}; /help lists commands\n`);
  // Ctrl-C stops the reply being generated; with none running it leaves the chat.
  let turn: AbortController | undefined;
  rl.on("SIGINT", () => {
    if (turn) turn.abort();
    else rl.close();
  });
  rl.setPrompt("> ");
  if (tty) rl.prompt();
  for await (const raw of rl) {
    const line = raw.trim();
    if (line.startsWith("/")) {
      const [cmd, ...rest] = line.split(/\s+/);
      const arg = rest.join("");
      if (cmd === "/quit" || cmd === "/exit") break;
      if (cmd === "/help") say(HELP);
      else if (cmd === "/show") say(`${formatValues(model.schema, attributes)}\n`);
      else if (cmd === "/reset") {
        history.splice(flags.system !== undefined ? 1 : 0);
        say("conversation cleared\n");
      } else if (cmd === "/set") {
        try {
          attributes = { ...attributes, ...parseAttrs(model, arg, "/set") };
          say(`${formatValues(model.schema, attributes)}\n`);
        } catch (err) {
          // A typo must not end the chat: say what was wrong and keep going.
          if (!(err instanceof InputError)) throw err;
          say(`error: ${err.message}\n`);
        }
      } else say(`unknown command ${cmd}\n${HELP}`);
    } else if (line !== "") {
      history.push({ role: "user", content: raw });
      turn = new AbortController();
      try {
        const reply = await model.generate({
          messages: history,
          attributes,
          ...opts,
          signal: turn.signal,
          onToken: say,
        });
        say("\n");
        history.push({ role: "assistant", content: reply.text });
      } catch (err) {
        // E.g. the conversation outgrew the context: the chat goes on without that message.
        if (!(err instanceof InputError)) throw err;
        history.pop();
        say(`error: ${err.message}${err.hint ? ` (${err.hint}; /reset starts over)` : ""}\n`);
      }
      turn = undefined;
    }
    if (tty) rl.prompt();
  }
  rl.close();
}
