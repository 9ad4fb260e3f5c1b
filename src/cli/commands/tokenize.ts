import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { loadTokenizer } from "../../tokenizer/load.js";
import { InputError } from "../../util/errors.js";

interface TokenizeOptions {
  tokenizer: string;
  ids?: boolean;
  pieces?: boolean;
}

export function register(program: Command): void {
  program
    .command("tokenize")
    .description(
      "Tokenize text as plain text (control-token strings stay text). Prints ids space-separated on one " +
        "line, without BOS, like llama.cpp's .out files; --pieces prints the vocabulary pieces as a JSON array.",
    )
    .requiredOption("--tokenizer <path>", "a tokenizer.json (or its directory) or a .gguf model/vocab file")
    .option("--ids", "print token ids (the default)")
    .option("--pieces", "print the pieces instead of ids")
    .argument("<text>", 'the text; "-" reads it from stdin (all of it, newlines included)')
    .action(async (text: string, opts: TokenizeOptions) => {
      if (opts.ids && opts.pieces)
        throw new InputError("choose one of --ids and --pieces", { field: "--pieces" });
      const input = text === "-" ? readFileSync(0, "utf8") : text;
      const tokenizer = await loadTokenizer(opts.tokenizer);
      try {
        const ids = tokenizer.encode(input);
        const line = opts.pieces ? JSON.stringify(ids.map((id) => tokenizer.idToPiece(id))) : ids.join(" ");
        process.stdout.write(`${line}\n`);
      } finally {
        await tokenizer.dispose();
      }
    });
}
