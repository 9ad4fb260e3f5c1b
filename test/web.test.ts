import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { haveSharedData, tempDir } from "./helpers.js";
import { TEST_SCHEMA, writeSteerModel } from "./serve-fixture.js";

/**
 * The web page in Debian's headless Chromium (installed by .ci/run; playwright-core never downloads a
 * browser). Loads the page, moves a slider, sends a message and watches the reply stream in.
 */
const CHROMIUM = process.env.STEERLM_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) process.stderr.write(`\n*** ${CHROMIUM} is missing: the web page test is SKIPPED ***\n\n`);

describe.skipIf(!haveSharedData || !haveChromium)("web page in headless Chromium", () => {
  const dir = tempDir();
  const profile = mkdtempSync(join(tmpdir(), "steerlm-chromium-"));
  let model: SteerableModel;
  let server: SteerServer;
  let browser: BrowserContext;

  beforeAll(async () => {
    model = await SteerableModel.load({ modelPath: await writeSteerModel(dir.path, "steer.gguf") });
    server = await startServer({ model, port: 0, maxTokensCap: 48 });
    // A fresh profile directory (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1200, height: 860 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await model?.dispose();
    dir.cleanup();
    rmSync(profile, { recursive: true, force: true });
  });

  it("shows one labelled slider per attribute, streams a steered reply and the rendered prompt", async () => {
    const page = await browser.newPage();
    const offsite: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(server.url)) offsite.push(r.url());
    });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.url}/`);

    const sliders = page.locator("#sliders input[type=range]");
    await expect.poll(() => sliders.count()).toBe(TEST_SCHEMA.attributes.length);
    for (const a of TEST_SCHEMA.attributes) {
      const slider = page.locator(`#attr-${a.name}`);
      expect(await slider.getAttribute("max")).toBe(String(a.max));
      expect(await slider.inputValue()).toBe(String(a.default));
      expect(await page.locator(`label[for=attr-${a.name}]`).textContent()).toContain(a.name);
      expect(await page.locator(`#attr-${a.name}-desc`).textContent()).toContain(a.description);
    }

    // Move the humor slider from 0 to 3 with the keyboard, as a user would.
    await page.locator("#attr-humor").focus();
    for (let i = 0; i < 3; i++) await page.keyboard.press("ArrowRight");
    expect(await page.locator("#attr-humor-value").textContent()).toBe("3");

    // Count streamed SSE chunks on the server's side of the wire.
    const streamed = page.waitForResponse((r) => r.url().endsWith("/v1/chat/completions"));
    await page.locator("#input").fill("Tell me something <extra_id_1> funny");
    await page.locator("#send").click();
    const res = await streamed;
    expect(res.headers()["content-type"]).toMatch(/text\/event-stream/);
    const body = await res.text();
    expect(
      body.split("\n\n").filter((e) => e.includes('"content":"') && !e.includes('"role"')).length,
    ).toBeGreaterThan(2);

    const reply = page.locator(".msg.assistant.done .body");
    await expect.poll(() => reply.count(), { timeout: 20_000 }).toBe(1);
    expect((await reply.textContent()).length).toBeGreaterThan(0);
    expect(await page.locator(".msg.assistant .meta").textContent()).toContain("humor:3");

    await page.locator("#prompt-view summary").click();
    const prompt = await page.locator("#prompt").textContent();
    expect(prompt).toContain("<extra_id_2>quality:4,humor:3,verbosity:3");
    expect(prompt).toContain("Tell me something <extra_id_1> funny");
    expect(await page.locator("#prompt .ctl").count()).toBe(4);
    expect(await page.locator("#prompt-stats").textContent()).toContain("4 control-token ids");

    // Settings change between turns: the second prompt carries the new value.
    await page.locator("#attr-humor").focus();
    await page.keyboard.press("ArrowLeft");
    await page.locator("#input").fill("again");
    await page.locator("#input").press("Enter");
    await expect.poll(() => page.locator(".msg.assistant.done").count(), { timeout: 20_000 }).toBe(2);
    expect(await page.locator("#prompt").textContent()).toContain(
      "<extra_id_2>quality:4,humor:2,verbosity:3",
    );

    await page.screenshot({
      path: process.env.STEERLM_SCREENSHOT ?? join(dir.path, "page.png"),
      fullPage: true,
    });
    expect(errors).toEqual([]);
    expect(offsite).toEqual([]);
  });
});
