import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { main } from "../src/cli/main.js";
import { SFT_FIELDS } from "../src/run/settings.js";
import { repoRoot } from "./helpers.js";

/**
 * Docs that cannot rot: every `steerlm …` command line in README.md and docs/ (shell code blocks, and inline
 * code that starts with `steerlm `) must name commands that exist and flags that their `--help` lists.
 * Each distinct `--help` runs once, in-process through the CLI's own `main`.
 */

interface DocCommand {
  where: string; // page:line
  words: string[]; // after `steerlm`
  commentFlags: string[]; // flags named in the line's trailing `# …` comment
}

const SHELL_FENCES = new Set(["", "sh", "bash", "shell", "console"]);
const SEPARATORS = new Set(["|", "||", "&&", ";", ">", ">>"]);
const FLAG_IN_COMMENT = /(?:^|[\s([,;])(--?[a-zA-Z][\w-]*)/g;

function docPages(): string[] {
  const docs = join(repoRoot, "docs");
  const pages = readdirSync(docs, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".md"))
    .map((f) => join(docs, f));
  return [join(repoRoot, "README.md"), ...pages.sort()];
}

/** Shell-style words: quotes group (and are dropped), so a quoted prompt is never read as a command. */
function shellWords(text: string): { words: string[]; comment: string } {
  const words: string[] = [];
  let word: string | null = null;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= "";
    } else if (c === "#" && word === null) {
      return { words, comment: text.slice(i + 1) };
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== null) words.push(word);
  return { words, comment: "" };
}

/** The `steerlm` invocations on one logical line; a `|` inside `[...]` or `<...>` is an alternative, not a pipe. */
function invocations(text: string, where: string): DocCommand[] {
  const { words, comment } = shellWords(text);
  const found: DocCommand[] = [];
  let current: string[] | null = null;
  let depth = 0;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (current !== null && !(depth === 0 && SEPARATORS.has(w))) {
      current.push(w);
      for (const c of w) {
        if (c === "[" || c === "<") depth++;
        if (c === "]" || c === ">") depth = Math.max(0, depth - 1);
      }
      continue;
    }
    current = null;
    const start = words[i - 1] === "npx" ? i - 1 : i;
    if (w === "steerlm" && (start === 0 || SEPARATORS.has(words[start - 1]))) {
      current = [];
      found.push({ where, words: current, commentFlags: [] });
    }
  }
  const last = found.at(-1);
  if (last) last.commentFlags = [...comment.matchAll(FLAG_IN_COMMENT)].map((m) => m[1]);
  return found;
}

function extractCommands(page: string, markdown: string): DocCommand[] {
  const out: DocCommand[] = [];
  const lines = markdown.split("\n");
  let fence: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const where = `${page}:${i + 1}`;
    const open = /^\s*```(\w*)/.exec(lines[i]);
    if (open) {
      fence = fence === null ? open[1] : null;
      continue;
    }
    if (fence !== null) {
      if (!SHELL_FENCES.has(fence)) continue;
      let text = lines[i];
      while (text.endsWith("\\") && i + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++i]}`;
      out.push(...invocations(text, where));
      continue;
    }
    for (const m of lines[i].matchAll(/`((?:npx )?steerlm [^`]*)`/g)) out.push(...invocations(m[1], where));
  }
  return out;
}

interface Help {
  subcommands: Set<string>;
  flags: Set<string>;
}

/** Reads commander's help: option terms (`-o, --output <dir>`) and the names under any command group heading. */
function parseHelp(text: string): Help {
  const help: Help = { subcommands: new Set(), flags: new Set() };
  let heading = ""; // the description above the first heading may hold indented text of any kind
  for (const line of text.split("\n")) {
    if (/^\S.*:$/.test(line)) heading = line;
    else if (heading === "" || heading === "Arguments:") continue;
    else if (/^ {2}-/.test(line)) {
      const term = line.trim().split(/\s{2,}/)[0];
      for (const m of term.matchAll(/(?:^|, )(--?[\w-]+)/g)) help.flags.add(m[1]);
    } else if (/^ {2}[a-z]/.test(line)) {
      for (const name of line.trim().split(/\s/)[0].split("|")) help.subcommands.add(name);
    }
  }
  return help;
}

const helps = new Map<string, Help>();

async function helpText(path: string[]): Promise<string> {
  let text = "";
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    text += String(chunk);
    return true;
  });
  try {
    expect(await main([...path, "--help"]), `steerlm ${path.join(" ")} --help`).toBe(0);
  } finally {
    write.mockRestore();
  }
  return text;
}

async function helpOf(path: string[]): Promise<Help> {
  const key = path.join(" ");
  const cached = helps.get(key);
  if (cached) return cached;
  const help = parseHelp(await helpText(path));
  helps.set(key, help);
  return help;
}

const bare = (w: string): string => w.replace(/^[[(]+|[\])]+$/g, "").split("=")[0];

/** The problems with one documented command line, each located at its page and line. */
async function checkCommand(cmd: DocCommand): Promise<string[]> {
  const problems: string[] = [];
  const path: string[] = [];
  let help = await helpOf(path);
  const flags: string[] = [];
  for (const word of cmd.words) {
    const w = bare(word);
    if (w.startsWith("-") && /^--?[a-zA-Z]/.test(w)) flags.push(w);
    else if (help.subcommands.size > 0) {
      // `steerlm <command> --help`, `steerlm …`: a placeholder for any command, nothing left to check.
      if (/^<.*>$|^(\.\.\.|…)$/.test(w)) return problems;
      if (!help.subcommands.has(w)) {
        const parent = ["steerlm", ...path].join(" ");
        problems.push(
          `${cmd.where}: \`${parent} ${w}\` is not a command (\`${parent}\` has: ${[...help.subcommands].join(", ")})`,
        );
        return problems;
      }
      // Flags before a subcommand belong to its parent: check them there.
      problems.push(...unknownFlags(cmd.where, path, help, flags.splice(0)));
      path.push(w);
      help = await helpOf(path);
    }
  }
  problems.push(...unknownFlags(cmd.where, path, help, [...flags, ...cmd.commentFlags]));
  return problems;
}

function unknownFlags(where: string, path: string[], help: Help, flags: string[]): string[] {
  const command = ["steerlm", ...path].join(" ");
  return flags
    .filter((f) => !help.flags.has(f))
    .map((f) => `${where}: ${f} is not an option of \`${command}\` (see \`${command} --help\`)`);
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens (code blocks skipped). */
function headingSlugs(markdown: string): Set<string> {
  const slugs = new Set<string>();
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) inFence = !inFence;
    const h = inFence ? null : /^#{1,6} (.*)$/.exec(line);
    if (h)
      slugs.add(
        h[1]
          .toLowerCase()
          .replace(/[^\p{L}\p{N} _-]/gu, "")
          .replace(/ /g, "-"),
      );
  }
  return slugs;
}

describe("docs", () => {
  const pages = docPages().map((file) => ({
    page: relative(repoRoot, file),
    text: readFileSync(file, "utf8"),
  }));

  it("every steerlm command and flag in README.md and docs/ exists in --help", async () => {
    const commands = pages.flatMap(({ page, text }) => extractCommands(page, text));
    // A broken extractor must not pass by finding nothing.
    expect(commands.length).toBeGreaterThan(50);
    const problems: string[] = [];
    for (const cmd of commands) problems.push(...(await checkCommand(cmd)));
    expect(problems).toEqual([]);
  });

  it("reports an unknown command or flag with its page and line", async () => {
    const page = ["Train:", "```sh", "steerlm sft --data a.jsonl \\", "  --no-such-flag 3 -o run", "```"];
    page.push("Then `steerlm apm trian --data a.jsonl` and `steerlm serve -m m.gguf --port 1  # or --prot`.");
    const problems: string[] = [];
    for (const cmd of extractCommands("x.md", page.join("\n"))) problems.push(...(await checkCommand(cmd)));
    expect(problems).toEqual([
      "x.md:3: --no-such-flag is not an option of `steerlm sft` (see `steerlm sft --help`)",
      "x.md:6: `steerlm apm trian` is not a command (`steerlm apm` has: train, agreement, help)",
      "x.md:6: --prot is not an option of `steerlm serve` (see `steerlm serve --help`)",
    ]);
  });

  it("every relative link in README.md and docs/ points at a file and heading that exist", () => {
    const broken: string[] = [];
    for (const { page, text } of pages) {
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const [target, anchor] = m[1].split("#");
        if (/^[a-z]+:/.test(target)) continue;
        const where = `${page}:${text.slice(0, m.index).split("\n").length}`;
        const file = target === "" ? join(repoRoot, page) : join(repoRoot, dirname(page), target);
        if (!existsSync(file)) broken.push(`${where}: ${m[1]}: no such file`);
        else if (anchor && file.endsWith(".md") && !headingSlugs(readFileSync(file, "utf8")).has(anchor))
          broken.push(`${where}: ${m[1]}: no such heading`);
      }
    }
    expect(broken).toEqual([]);
  });
});

describe("steerlm --help", () => {
  it("docs/training.md lists every run setting, in the order of src/run/settings.ts", () => {
    const text = readFileSync(join(repoRoot, "docs", "training.md"), "utf8");
    const list = /`(data val [\w\s]+?)`/.exec(text)?.[1];
    expect(list?.split(/\s+/)).toEqual(SFT_FIELDS);
  });

  it("lists the commands in pipeline order, grouped by step, one line each", async () => {
    const lines = (await helpText([])).split("\n");
    const headings = lines.filter((l) => /^\S.*:$/.test(l));
    expect(headings).toEqual([
      "Options:",
      "Main job:",
      "Data:",
      "Attribute model:",
      "Training:",
      "Steering:",
      "Evaluation:",
      "Models and export:",
      "Other:",
    ]);
    const listing = lines.slice(lines.indexOf("Main job:")).filter((l) => l.startsWith(" "));
    // A description that wraps would leave a line that starts with spaces only.
    expect(listing.filter((l) => !/^ {2}\S/.test(l))).toEqual([]);
    expect(listing.map((l) => l.trim().split(" ")[0])).toEqual([
      "demo",
      "data",
      "tokenize",
      "bench",
      "apm",
      "annotate",
      "sft",
      "bootstrap",
      "steerlm2",
      "generate",
      "chat",
      "serve",
      "eval",
      "reproduce",
      "export",
      "model",
      "help",
    ]);
  });
});
