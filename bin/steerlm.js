#!/usr/bin/env node
// The CLI runs from the compiled library; `npm ci` builds it through the `prepare` script.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write("steerlm: dist/ is missing; run `npm run build` (npm ci runs it for you).\n");
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
