import { describe, expect, it } from "vitest";
import { backoffMs, parseBackendUrl, retryAfter } from "./upstream.js";

describe("the retry rules", () => {
  it("wait up to 0.5 s, 1 s, 2 s ... before retry 1, 2, 3 ..., at most 30 s, uniformly (full jitter)", () => {
    expect([1, 2, 3, 7, 20].map((n) => backoffMs(n, 1))).toEqual([500, 1000, 2000, 30_000, 30_000]);
    expect(backoffMs(3, 0)).toBe(0);
    expect(backoffMs(2, 0.25)).toBe(250);
  });

  it("read Retry-After as seconds or an HTTP date, capped at 10 minutes", () => {
    const now = Date.parse("Wed, 21 Oct 2026 07:28:00 GMT");
    expect(retryAfter("2", now)).toBe(2000);
    expect(retryAfter("0", now)).toBe(0);
    expect(retryAfter("Wed, 21 Oct 2026 07:28:03 GMT", now)).toBe(3000);
    expect(retryAfter("Wed, 21 Oct 2026 07:27:00 GMT", now)).toBe(0); // a date gone by: at once
    expect(retryAfter("86400", now)).toBe(600_000);
    expect([retryAfter(null, now), retryAfter("", now), retryAfter("soon", now)]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
  });
});

describe("an engine's URL", () => {
  it("is http(s), with or without /v1, kept without a trailing slash", () => {
    expect(parseBackendUrl("http://127.0.0.1:8000", {})).toBe("http://127.0.0.1:8000");
    expect(parseBackendUrl("http://127.0.0.1:8000/v1/", {})).toBe("http://127.0.0.1:8000");
    expect(parseBackendUrl("https://engines.example/llama/v1", {})).toBe("https://engines.example/llama");
  });

  it("is refused otherwise, at the place given", () => {
    for (const bad of ["ftp://x", "127.0.0.1:8000", "http://x/?a=1", "not a url"])
      expect(() => parseBackendUrl(bad, { setting: "backend" })).toThrow(
        `backend: expected the http(s) URL of an OpenAI-compatible server, got ${JSON.stringify(bad)}`,
      );
  });
});
