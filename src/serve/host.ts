import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { HttpError } from "./errors.js";

/** An address only this machine can reach: 127.0.0.0/8, ::1 and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return isLocalhostName(h) || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h) || h === "::1";
}

/** `localhost` and its subdomains (RFC 6761): they always resolve to this machine, never to a web page's. */
const isLocalhostName = (name: string) => name === "localhost" || name.endsWith(".localhost");

/** The name in a Host header, lower case: `[::1]:8080` -> `::1`, `Example.org.:80` -> `example.org`. */
function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  const close = h.indexOf("]");
  const name = h.startsWith("[") ? (close > 0 ? h.slice(1, close) : h) : h.replace(/:\d*$/, "");
  return name.replace(/\.$/, "");
}

/**
 * The Host check against DNS rebinding: a web page can point a name it owns at 127.0.0.1 and then talk to
 * a key-less local server as its own origin, but the browser still sends that name as Host. So a server
 * bound to loopback answers only requests addressed to localhost, an IP address (a page's origin is never
 * one) or a name in `allowed`; bound beyond loopback, only an `allowed` list restricts it. "*" allows any.
 */
export function hostCheck(bindHost: string, allowed?: readonly string[]): (req: IncomingMessage) => void {
  const names = new Set(allowed?.map((n) => hostName(n)));
  if (names.has("*") || (allowed === undefined && !isLoopbackHost(bindHost))) return () => {};
  return (req) => {
    const header = req.headers.host;
    if (header === undefined) return; // HTTP/1.0 without Host: not a browser
    const name = hostName(header);
    if (isLocalhostName(name) || isIP(name) !== 0 || names.has(name)) return;
    throw new HttpError(
      403,
      `requests for host ${JSON.stringify(name)} are not answered: this server answers localhost, IP ` +
        "addresses and the names it is told to allow (steerlm serve --allowed-hosts); a web page may be " +
        "trying DNS rebinding",
      "permission_error",
      null,
      "host_not_allowed",
    );
  };
}
