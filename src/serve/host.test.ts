import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { hostCheck, isLoopbackHost } from "./host.js";

const asked = (host: string | undefined) =>
  ({ headers: host === undefined ? {} : { host } }) as IncomingMessage;
const answers = (check: (req: IncomingMessage) => void, host: string | undefined) => {
  try {
    check(asked(host));
    return true;
  } catch {
    return false;
  }
};

describe("isLoopbackHost", () => {
  it("knows the addresses only this machine can reach", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LocalHost", "::ffff:127.0.0.1"])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.org", "127.0.0.1.nip.io"])
      expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe("hostCheck", () => {
  it("bound to loopback: localhost, IP addresses and the allowed names only", () => {
    const check = hostCheck("127.0.0.1", ["Steer.lan"]);
    for (const h of [
      "localhost:8080",
      "a.localhost",
      "127.0.0.1:1",
      "[::1]:80",
      "10.0.0.7",
      "steer.lan:8080",
      undefined,
    ])
      expect(answers(check, h), String(h)).toBe(true);
    for (const h of ["rebind.example", "steer.lan.example", "[::1", "localhost.example:80"])
      expect(answers(check, h), h).toBe(false);
  });

  it("bound beyond loopback: any name unless a list is given; * allows any", () => {
    expect(answers(hostCheck("0.0.0.0"), "anything.example")).toBe(true);
    expect(answers(hostCheck("0.0.0.0", ["steer.lan"]), "anything.example")).toBe(false);
    expect(answers(hostCheck("0.0.0.0", ["steer.lan"]), "steer.lan")).toBe(true);
    expect(answers(hostCheck("127.0.0.1", ["*"]), "anything.example")).toBe(true);
  });
});
