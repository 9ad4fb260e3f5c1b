import { InputError } from "../util/errors.js";

/**
 * The SteerLM prompt template, byte-exact with NeMo / NeMo-Aligner. One renderer serves every variant:
 *
 *   <extra_id_0>System\n{system}\n
 *   <extra_id_1>User\n{user}\n
 *   <extra_id_1>Assistant\n<extra_id_2>{values}\n{response}\n
 *   <extra_id_1>
 *
 * The output is a list of parts. Control tokens are parts of their own, and only this module creates
 * them: text from users or data is always a "text" part, so tokenizers never turn it into control ids.
 * Parts are also split at loss boundaries, so no token can straddle a boundary.
 */
export const CONTROL_TOKENS = {
  system: "<extra_id_0>",
  turn: "<extra_id_1>",
  label: "<extra_id_2>",
} as const;

export type ControlToken = (typeof CONTROL_TOKENS)[keyof typeof CONTROL_TOKENS];

/** The control tokens in id order (`<extra_id_0..2>`), as tokenizers add them. */
export const CONTROL_TOKEN_NAMES: readonly ControlToken[] = Object.values(CONTROL_TOKENS);

export function isControlToken(text: string): text is ControlToken {
  return (CONTROL_TOKEN_NAMES as readonly string[]).includes(text);
}

export const DEFAULT_SYSTEM_PROMPT =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

/**
 * The system prompt of OpenAI-style messages: every system message's content, in order, joined with "\n";
 * null where there is none (SteerLM's default then applies). The exported chat template does the same.
 */
export function joinedSystemPrompt(
  messages: ReadonlyArray<{ role: string; content: string }>,
): string | null {
  const system = messages.filter((m) => m.role === "system").map((m) => m.content);
  return system.length > 0 ? system.join("\n") : null;
}

export interface Turn {
  role: "user" | "assistant";
  text: string;
  /** Value string of an assistant turn (e.g. `humor:0,verbosity:4`); null or absent: no value line. */
  values?: string | null;
}

export interface Conversation {
  system: string;
  turns: Turn[];
}

/**
 * - `acsft`: attribute-conditioned SFT; loss on each response, its line end and the turn terminator.
 * - `generative-apm`: the paper's attribute model; the value line follows the response, loss on the values.
 * - `regression`: the regression attribute model's text, ending in `<extra_id_2>`; no loss spans.
 * - `inference`: the prompt up to and including the value line of the assistant turn to generate.
 */
export type TemplateVariant = "acsft" | "generative-apm" | "regression" | "inference";

export interface TemplatePart {
  kind: "control" | "text";
  text: string;
  /** This part's tokens carry loss. */
  loss: boolean;
}

export interface Rendered {
  text: string;
  parts: TemplatePart[];
  /** Character ranges [start, end) that carry loss, merged and in order. */
  lossSpans: Array<[number, number]>;
}

export interface RenderOptions {
  /**
   * For `inference`: the value string of the assistant turn to generate; null: no value line, the prompt
   * of a model trained without attributes (plain SFT data, whose turns have no labels).
   */
  values?: string | null;
}

const NL = "\n";

/**
 * What closes a response in the template: its line end, then `<extra_id_1>`. A generated reply ends before
 * the whole of it, so that sent back in the next request it renders as it was generated.
 */
export const RESPONSE_END = { lineEnd: NL, text: `${NL}${CONTROL_TOKENS.turn}` } as const;

class PartList {
  readonly parts: TemplatePart[] = [];
  control(token: ControlToken, loss = false): void {
    this.parts.push({ kind: "control", text: token, loss });
  }
  text(text: string, loss = false): void {
    if (text === "") return;
    const last = this.parts[this.parts.length - 1];
    if (last && last.kind === "text" && last.loss === loss) last.text += text;
    else this.parts.push({ kind: "text", text, loss });
  }
}

export function renderConversation(
  conv: Conversation,
  variant: TemplateVariant,
  opts: RenderOptions = {},
): Rendered {
  checkConversation(conv, variant);
  const out = new PartList();
  out.control(CONTROL_TOKENS.system);
  out.text(`System${NL}${conv.system}${NL}`);

  // In acsft the `<extra_id_1>` that opens the next turn (or ends the text) terminates the response
  // before it, and carries loss: the model must learn to end its turn.
  let terminatorLoss = false;
  const openTurn = () => {
    out.control(CONTROL_TOKENS.turn, terminatorLoss);
    terminatorLoss = false;
  };
  for (const turn of conv.turns) {
    openTurn();
    if (turn.role === "user") {
      out.text(`User${NL}${turn.text}${NL}`);
      continue;
    }
    out.text(`Assistant${NL}`);
    const values = turn.values ?? null;
    if (variant === "regression") {
      // Only the last response is scored; earlier assistant turns are plain context.
      out.text(`${turn.text}${NL}`);
    } else if (variant === "generative-apm") {
      out.text(`${turn.text}${NL}`);
      if (values !== null) {
        out.control(CONTROL_TOKENS.label);
        out.text(`${values}${NL}`, true);
      }
    } else {
      // acsft, and earlier turns of an inference prompt.
      if (values !== null) {
        out.control(CONTROL_TOKENS.label);
        out.text(`${values}${NL}`);
      }
      const loss = variant === "acsft";
      out.text(`${turn.text}${NL}`, loss);
      terminatorLoss = loss;
    }
  }

  if (variant === "inference") {
    if (opts.values === undefined) {
      throw new InputError("the inference template needs the value string of the turn to generate", {
        field: "values",
      });
    }
    openTurn();
    out.text(`Assistant${NL}`);
    if (opts.values !== null) {
      out.control(CONTROL_TOKENS.label);
      out.text(`${opts.values}${NL}`);
    }
  } else if (variant === "regression") {
    out.control(CONTROL_TOKENS.label);
  } else {
    openTurn();
  }
  return finish(out.parts);
}

/**
 * The template with `{system}`, `{user}`, `{values}` and `{response}` placeholders, rendered by
 * `renderConversation` itself (exported models carry it as their `steerlm.template` metadata).
 */
export function templateText(): string {
  const placeholders: Conversation = {
    system: "{system}",
    turns: [
      { role: "user", text: "{user}" },
      { role: "assistant", text: "{response}", values: "{values}" },
    ],
  };
  return renderConversation(placeholders, "acsft").text;
}

function finish(parts: TemplatePart[]): Rendered {
  let text = "";
  const lossSpans: Array<[number, number]> = [];
  for (const p of parts) {
    const start = text.length;
    text += p.text;
    if (!p.loss) continue;
    const prev = lossSpans[lossSpans.length - 1];
    if (prev && prev[1] === start) prev[1] = text.length;
    else lossSpans.push([start, text.length]);
  }
  return { text, parts, lossSpans };
}

function checkConversation(conv: Conversation, variant: TemplateVariant): void {
  const last = conv.turns.at(-1);
  if (last === undefined) throw new InputError("conversation has no turns", { field: "conversations" });
  const hasAssistant = conv.turns.some((t) => t.role === "assistant");
  if (variant === "inference") {
    if (last.role !== "user") {
      throw new InputError("an inference prompt must end with a user turn", { field: "conversations" });
    }
  } else if (!hasAssistant) {
    throw new InputError("conversation has no Assistant turn", { field: "conversations" });
  }
  if (variant === "regression" && last.role !== "assistant") {
    throw new InputError("the regression text must end with the Assistant response it scores", {
      field: "conversations",
    });
  }
}
