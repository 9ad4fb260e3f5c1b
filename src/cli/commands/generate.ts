import { createInterface } from "node:readline";
import { type Command, Option } from "commander";
import { type AttributeValues, formatValues, parseAttributes, withDefaults } from "../../data/attributes.js";
import { DEFAULT_MAX_TOKENS } from "../../inference/completion.js";
import type { Generator } from "../../inference/generator.js";
import type { SamplingOptions } from "../../inference/model.js";
import { AbortedError } from "../../inference/pool.js";
import { SAMPLING_SETTINGS, type SamplingName } from "../../inference/sampling.js";
import type { ChatMessage } from "../../inference/vocab.js";
import { InputError, SteerlmError } from "../../util/errors.js";
import { type Flags, forUser, optionForSetting, strFlag } from "../flags.js";
import {
  addBackendOptions,
  addContextOptions,
  addGuidanceOptions,
  addModelOptions,
  addSamplingOptions,
  guidanceValues,
  openModel,
  samplingValues,
} from "../options.js";

const SAMPLING: readonly SamplingName[] = ["maxTokens", "temperature", "topK", "topP", "seed"];

/**
 * `verbosity=4,humor=0.5` (or `verbosity:4,...`) checked against the model's schema; `field` locates
 * errors. Fractions are mixed by a local model (src/inference/mixture.ts); a remote one refuses them.
 */
function parseAttrs(model: Generator, text: string | undefined, field: string): AttributeValues {
  return text === undefined ? {} : parseAttributes(model.schema, text, { field }, { fractions: true });
}

const showValues = (model: Generator, values: AttributeValues) =>
  formatValues(model.schema, values, { fractions: true });

function withModelOptions(cmd: Command): Command {
  addModelOptions(cmd)
    .addOption(
      // The library names the values `attributes` (a remote engine refuses fractional ones there).
      optionForSetting(
        new Option(
          "-a, --attr <k=v,...>",
          "attribute values, e.g. verbosity=4,humor=0.5 (others take the schema defaults; fractions mix the neighbouring values)",
        ),
        "attributes",
      ),
    )
    .option("--system <text>", "system prompt (default: SteerLM's)");
  addGuidanceOptions(cmd);
  addSamplingOptions(
    cmd,
    SAMPLING,
    { temperature: SAMPLING_SETTINGS.temperature.default },
    { maxTokens: `most tokens to generate (default: ${DEFAULT_MAX_TOKENS}, or what fits)` },
  );
  addContextOptions(cmd);
  return addBackendOptions(cmd);
}

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
    .action(async (promptArg: string | undefined, flags: Flags) => {
      const prompt = promptArg === undefined || promptArg === "-" ? await readStdin() : promptArg;
      if (prompt.trim() === "") throw new InputError("the prompt is empty", { field: "prompt" });
      const model = await openModel(flags);
      try {
        const messages: ChatMessage[] = [];
        const system = strFlag(flags, "system");
        if (system !== undefined) messages.push({ role: "system", content: system });
        messages.push({ role: "user", content: prompt });
        const attributes = parseAttrs(model, strFlag(flags, "attr"), "--attr");
        const rendered = model.renderPrompt({ messages, attributes, ...guidanceValues(flags) });
        if (flags.showPrompt) process.stderr.write(rendered.text);
        await model.generate({
          prompt: rendered,
          ...samplingValues(flags, SAMPLING),
          onToken: (t) => process.stdout.write(t),
        });
        process.stdout.write("\n");
      } finally {
        await model.dispose();
      }
    });

  const chat = withModelOptions(
    program
      .command("chat")
      .description(
        "interactive steered chat; /set k=v changes attributes between turns (/help lists commands)",
      ),
  ).action(async (flags: Flags) => {
    const model = await openModel(flags);
    try {
      await chatLoop(model, flags, chat);
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

async function chatLoop(model: Generator, flags: Flags, command: Command): Promise<void> {
  const tty = Boolean(process.stdin.isTTY);
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty });
  const say = (text: string) => process.stdout.write(text);
  // A mistake must not end the chat: say what was wrong (as the error printer would) and keep going.
  // An engine that fails (--backend) is such a mistake too: the chat and its conversation go on.
  const sayError = (err: unknown, ...more: string[]) => {
    if (!(err instanceof SteerlmError)) throw err;
    const shown = forUser(err, command);
    say(`error: ${shown.message}${shown.hint ? ` (${[shown.hint, ...more].join("; ")})` : ""}\n`);
  };
  // The attributes given (not defaults): guidance pushes only these (mixture.ts, steered attributes).
  let attributes = parseAttrs(model, strFlag(flags, "attr"), "--attr");
  const system = strFlag(flags, "system");
  const history: ChatMessage[] = system !== undefined ? [{ role: "system", content: system }] : [];
  const opts: SamplingOptions & ReturnType<typeof guidanceValues> = {
    ...samplingValues(flags, SAMPLING),
    ...guidanceValues(flags),
  };
  const showAll = (values: AttributeValues) =>
    showValues(model, withDefaults(model.schema, values, {}, { fractions: true }));
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
      else if (cmd === "/show") say(`${showAll(attributes)}\n`);
      else if (cmd === "/reset") {
        history.splice(system !== undefined ? 1 : 0);
        say("conversation cleared\n");
      } else if (cmd === "/set") {
        try {
          attributes = { ...attributes, ...parseAttrs(model, arg, "/set") };
          say(`${showAll(attributes)}\n`);
        } catch (err) {
          sayError(err);
        }
      } else say(`unknown command ${cmd}\n${HELP}`);
    } else if (line !== "") {
      history.push({ role: "user", content: raw });
      turn = new AbortController();
      let shown = "";
      try {
        const reply = await model.generate({
          messages: history,
          attributes,
          ...opts,
          signal: turn.signal,
          onToken: (text) => {
            shown += text;
            say(text);
          },
        });
        say("\n");
        history.push({ role: "assistant", content: reply.text });
      } catch (err) {
        if (shown !== "") say("\n");
        if (err instanceof AbortedError) {
          // Ctrl-C while an engine was answering: the reply as far as it was shown, as a local model gives
          history.push({ role: "assistant", content: shown });
        } else {
          // E.g. the conversation outgrew the context: the chat goes on without that message.
          history.pop();
          sayError(err, "/reset starts over");
        }
      }
      turn = undefined;
    }
    if (tty) rl.prompt();
  }
  rl.close();
}
