import { existsSync, readFileSync } from "node:fs";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The web page's files live in src/serve/assets (plain HTML/CSS/JS, no CDN). tsc does not copy them, so
 * the compiled server (dist/serve) finds them back in src/ of the same checkout; run from source (tsx,
 * vitest) they sit beside this module. Read once at startup and served from memory.
 */
const CANDIDATES = ["./assets/", "../../src/serve/assets/"];
const FILES = ["index.html", "app.js", "style.css"] as const;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

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
  for (const name of FILES) {
    const asset = { body: readFileSync(`${dir}${name}`), type: TYPES[extname(name)] };
    out.set(`/${name}`, asset);
    if (name === "index.html") out.set("/", asset);
  }
  return out;
}
