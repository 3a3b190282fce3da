import { createHash, X509Certificate } from "node:crypto";
import { isIP } from "node:net";

/**
 * HTTPS on the HTTP listener (docs/api.md): which listener speaks TLS, who may use the plain one,
 * and the certificate fingerprint that `agentowl serve` logs, `agentowl init` prints and
 * `agentowl login` pins. Pure: data in, data out.
 */

export type HttpTlsMode = "auto" | "on" | "off";

/** 127.0.0.0/8, ::1, ::ffff:127.x.x.x and `localhost` (by name: what the operator wrote). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6)
    return h === "::1" || h === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(h) || /^::ffff:7f[0-9a-f]{2}:/.test(h);
  return false;
}

/** Whether the main HTTP listener serves HTTPS: `auto` keeps plain HTTP on loopback only. */
export function servesHttps(mode: HttpTlsMode, listenHost: string): boolean {
  if (mode === "on") return true;
  if (mode === "off") return false;
  return !isLoopback(listenHost);
}

/** `sha256:AB:CD:…`: the SHA-256 of the certificate's DER bytes, as `openssl x509 -fingerprint -sha256` prints it. */
export function fingerprintOf(cert: string | Buffer): string {
  const der = typeof cert === "string" ? new X509Certificate(cert).raw : cert;
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return `sha256:${hex.match(/../g)!.join(":")}`;
}

/** A fingerprint as a person may type it (`sha256:ab:cd…`, `AB CD…`, `abcd…`) in the form above; null if it is not one. */
export function parseFingerprint(text: string): string | null {
  const hex = text
    .trim()
    .replace(/^sha-?256[:=]?/i, "")
    .replace(/[\s:]/g, "");
  if (!/^[0-9a-f]{64}$/i.test(hex)) return null;
  return `sha256:${hex.toUpperCase().match(/../g)!.join(":")}`;
}

/** A certificate that signs itself: the only kind a client can trust by pinning it as its own CA. */
export function isSelfSigned(pem: string): boolean {
  try {
    const c = new X509Certificate(pem);
    return c.subject === c.issuer && c.verify(c.publicKey);
  } catch {
    return false;
  }
}

/** The certificate (DER) as PEM. */
export function pemOf(der: Buffer): string {
  const b64 = der
    .toString("base64")
    .match(/.{1,64}/g)!
    .join("\n");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/**
 * The plain-HTTP listener's rule (http_plain_listen): loopback clients get everything; others
 * get `/healthz` and the webhooks of bindings that opted in (`plain_http: true`). Returns what
 * the request needs for the decision: `allow`, `deny`, or the binding to look up.
 */
export type PlainDecision = { kind: "allow" } | { kind: "deny" } | { kind: "binding"; tenant: string; binding: string };

export function plainAccess(method: string, pathname: string, clientAddress: string | null): PlainDecision {
  if (clientAddress !== null && isLoopback(clientAddress)) return { kind: "allow" };
  if ((method === "GET" || method === "HEAD") && pathname === "/healthz") return { kind: "allow" };
  const m = /^\/ingress\/webhook\/([^/]+)\/([^/]+)$/.exec(pathname);
  if (method === "POST" && m) {
    try {
      return { kind: "binding", tenant: decodeURIComponent(m[1]!), binding: decodeURIComponent(m[2]!) };
    } catch {
      return { kind: "deny" };
    }
  }
  return { kind: "deny" };
}
