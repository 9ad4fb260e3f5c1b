import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApmScorer } from "../src/apm/index.js";
import { SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import { trainTinyApm, writeTinyInit } from "./fixtures.js";
import { haveSharedData, tempDir } from "./helpers.js";
import { TEST_SCHEMA, writeSteerModel } from "./serve-fixture.js";

/**
 * The web page in Debian's headless Chromium (installed by .ci/run; playwright-core never downloads a
 * browser). Loads the page, moves a slider, sends a message and watches the reply stream in; with an
 * attribute model on the server (a real tiny APM), the measured attributes appear beside the requested ones.
 */
const CHROMIUM = process.env.STEERLM_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) process.stderr.write(`\n*** ${CHROMIUM} is missing: the web page test is SKIPPED ***\n\n`);

describe.skipIf(!haveSharedData || !haveChromium)("web page in headless Chromium", () => {
  const dir = tempDir();
  const profile = mkdtempSync(join(tmpdir(), "steerlm-chromium-"));
  let model: SteerableModel;
  let server: SteerServer;
  let scorer: ApmScorer;
  let measured: SteerServer;
  let browser: BrowserContext;

  beforeAll(async () => {
    model = await SteerableModel.load({ modelPath: await writeSteerModel(dir.path, "steer.gguf") });
    server = await startServer({ model, port: 0, maxTokensCap: 48 });
    writeBench(dir.path, synthesize({ n: 60, seed: 3 }));
    const apm = `${dir.path}/apm`;
    await trainTinyApm({ data: `${dir.path}/train.jsonl`, init: writeTinyInit(dir.path), out: apm });
    scorer = await ApmScorer.load(apm, { threads: 1 });
    measured = await startServer({ model, apm: scorer, port: 0, maxTokensCap: 48 });
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
    await measured?.close();
    await scorer?.free();
    await model?.dispose();
    dir.cleanup();
    rmSync(profile, { recursive: true, force: true });
  });

  it("shows one labelled slider per attribute, streams a steered reply and the rendered prompt", async () => {
    const page = await browser.newPage();
    const offsite: string[] = [];
    const sent: Array<{ max_tokens?: number; messages: Array<{ role: string; content: string }> }> = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(server.url)) offsite.push(r.url());
      if (r.url().endsWith("/v1/chat/completions")) sent.push(JSON.parse(r.postData() ?? "{}"));
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
    // the reply length field: empty, so the request leaves max_tokens to the server (what fits, up to its cap:
    // a model whose context is the cap would refuse every prompt asked for the whole cap)
    expect(await page.locator("#max-tokens").inputValue()).toBe("");
    expect(await page.locator("#max-tokens").getAttribute("placeholder")).toBe("as fits, up to 48");
    expect(await page.locator("#max-tokens").getAttribute("max")).toBe("48");

    // Move the humor slider from 0 to 3 with the keyboard, as a user would (0.1 per key press).
    await page.locator("#attr-humor").focus();
    for (let i = 0; i < 30; i++) await page.keyboard.press("ArrowRight");
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

    expect(sent[0]).not.toHaveProperty("max_tokens");

    // A refused message (too long for the context) is shown as failed and left out of the conversation,
    // so the next one is not refused for it too.
    await page.locator("#input").fill("word ".repeat(3000));
    await page.locator("#input").press("Enter");
    await expect.poll(() => page.locator("#error").textContent()).toContain("400");
    expect(await page.locator(".msg.user.failed").count()).toBe(1);

    // Settings change between turns: the second prompt carries the new value, and the system prompt.
    await page.locator("#attr-humor").focus();
    for (let i = 0; i < 10; i++) await page.keyboard.press("ArrowLeft");
    await page.locator("#system").fill("Be brief.");
    await page.locator("#input").fill("again");
    await page.locator("#input").press("Enter");
    await expect.poll(() => page.locator(".msg.assistant.done").count(), { timeout: 20_000 }).toBe(2);
    expect(await page.locator("#prompt").textContent()).toContain(
      "<extra_id_2>quality:4,humor:2,verbosity:3",
    );
    expect(await page.locator("#prompt").textContent()).toContain("System\nBe brief.\n");
    const last = sent.at(-1)?.messages ?? [];
    expect(last.map((m) => m.role)).toEqual(["system", "user", "assistant", "user"]);
    expect(last[2]?.content).toBe(await reply.first().textContent());

    // This server has no attribute model: no measured panel at all, not an empty one.
    expect(await page.locator(".measured").count()).toBe(0);
    expect(errors).toEqual([]);
    expect(offsite).toEqual([]);
  });

  it("sends a fractional value and guidance, and shows the APM's measurements beside the requested values", async () => {
    const page = await browser.newPage();
    // A guided, mixed reply evaluates three sequences per token: on a loaded machine the reply and its
    // scoring can take longer than playwright's default 30 s wait (the test's own limit still applies).
    page.setDefaultTimeout(100_000);
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${measured.url}/`);
    await expect
      .poll(() => page.locator("#sliders input[type=range]").count())
      .toBe(TEST_SCHEMA.attributes.length);

    // humor to 2.5 and guidance to 1, key by key.
    await page.locator("#attr-humor").focus();
    for (let i = 0; i < 25; i++) await page.keyboard.press("ArrowRight");
    expect(await page.locator("#attr-humor-value").textContent()).toBe("2.5");
    await page.locator("#guidance").focus();
    for (let i = 0; i < 10; i++) await page.keyboard.press("ArrowRight");
    expect(await page.locator("#guidance-value").textContent()).toBe("1");

    const sent = page.waitForRequest((r) => r.url().endsWith("/v1/chat/completions"));
    const streamed = page.waitForResponse((r) => r.url().endsWith("/v1/chat/completions"));
    const scored = page.waitForResponse((r) => r.url().endsWith("/v1/steerlm/score"));
    await page.locator("#input").fill("Tell me a joke");
    await page.locator("#send").click();
    const body = (await sent).postDataJSON() as {
      steerlm: { attributes: Record<string, number>; guidance: number };
    };
    expect(body.steerlm.attributes.humor).toBe(2.5);
    expect(body.steerlm.guidance).toBe(1);
    // humor 2.5 mixes humor:2 and humor:3 (half each, times 1 + g), against the contrast at humor:0.
    const first = (await (await streamed).text()).split("\n\n")[0] as string;
    expect(JSON.parse(first.slice("data: ".length)).steerlm.conditionings).toEqual([
      { values: "quality:4,humor:2,verbosity:3", weight: 1 },
      { values: "quality:4,humor:3,verbosity:3", weight: 1 },
      { values: "quality:4,humor:0,verbosity:3", weight: -1 },
    ]);
    const score = (await (await scored).json()) as { scores: Array<{ attributes: Record<string, number> }> };

    const panel = page.locator(".msg.assistant.measured-done .measured");
    await expect.poll(() => panel.count(), { timeout: 20_000 }).toBe(1);
    // One bar per attribute the APM predicts (all nine of steerlm's), each with its measured value; the
    // attributes the model's schema also has show the requested value.
    const rows = panel.locator(".measure");
    expect(await rows.count()).toBe(9);
    const humor = panel.locator('.measure[data-attribute="humor"] .value');
    expect(await humor.textContent()).toBe(`${Number(score.scores[0]?.attributes.humor).toFixed(2)} (2.5)`);
    expect(await panel.locator('.measure[data-attribute="toxicity"] .value').textContent()).not.toContain(
      "(",
    );
    expect(await panel.locator(".measure .fill").count()).toBe(9);
    expect(await panel.locator(".measure .asked").count()).toBe(3);
    expect(await page.locator(".msg.assistant .meta").textContent()).toContain("guidance 1");

    await page.screenshot({
      path: process.env.STEERLM_SCREENSHOT ?? join(dir.path, "page.png"),
      fullPage: true,
    });
    expect(errors).toEqual([]);
  });
});
