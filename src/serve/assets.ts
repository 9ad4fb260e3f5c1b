import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * The web page's files live in src/serve/assets (plain HTML/CSS/JS, no CDN). tsc does not copy them, so
 * the compiled server (dist/serve) finds them back in src/ of the same checkout; run from source (tsx,
 * vitest) they sit beside this module. Read once at startup and served from memory.
 */
const CANDIDATES = ["./assets/", "../../src/serve/assets/"];
const FILES: ReadonlyArray<readonly [name: string, type: string]> = [
  ["index.html", "text/html; charset=utf-8"],
  ["app.js", "text/javascript; charset=utf-8"],
  ["style.css", "text/css; charset=utf-8"],
];

export interface Asset {
  body: Buffer;
  type: string;
}

export function loadAssets(): Map<string, Asset> {
  const dir = CANDIDATES.map((c) => fileURLToPath(new URL(c, import.meta.url))).find((d) =>
    existsSync(`${d}index.html`),
  );
  if (!dir)
    throw new Error(
      `web page assets not found (looked in ${CANDIDATES.join(", ")} beside ${import.meta.url})`,
    );
  const out = new Map<string, Asset>();
  for (const [name, type] of FILES) {
    const asset = { body: readFileSync(`${dir}${name}`), type };
    out.set(`/${name}`, asset);
    if (name === "index.html") out.set("/", asset);
  }
  return out;
}
