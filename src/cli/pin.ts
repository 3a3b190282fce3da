import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:tls";
import { isIP } from "node:net";
import { loadConfig } from "../config/index.ts";
import { fingerprintOf, isSelfSigned, pemOf, servesHttps } from "../server/tls.ts";
import { isCompiledBinary } from "../version.ts";
import { CommandFailure, EXIT } from "./exit-codes.ts";

/**
 * Certificate pinning for the CLI (docs/api.md): `agentowl login` shows the HTTPS listener's
 * certificate fingerprint, the person compares it with the one `agentowl serve` logged or
 * `agentowl init` printed, and the profile keeps it; every later request checks the server
 * presents that very certificate before the token leaves. The server's certificate is
 * self-signed by default, so no CA could vouch for it: the pin is what does.
 */
export interface Pin {
  /** `sha256:AB:CD:…` of the certificate's DER bytes. */
  fingerprint: string;
  /** The certificate itself (PEM), when known: a self-signed one is then the connection's only trusted CA. */
  certificate?: string;
  /** Where the pin came from, for the refusal: "profile default", "--fingerprint", "/var/lib/agentowl/tls/cert.pem". */
  source: string;
}

export interface PeerCertificate {
  pem: string;
  fingerprint: string;
  subject: string;
  validTo: string;
}

/** The certificate a TLS server presents, read without trusting it (for the person to judge). */
export function peerCertificate(url: string, timeoutMs = 10_000): Promise<PeerCertificate> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve, reject) => {
    const socket = connect({
      host,
      port: Number(u.port || 443),
      servername: isIP(host) ? undefined : host,
      rejectUnauthorized: false,
    });
    const timer = setTimeout(
      () => socket.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })),
      timeoutMs,
    );
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const cert = socket.getPeerCertificate();
      socket.end();
      if (!cert?.raw) return reject(new Error("the server presented no certificate"));
      const subject = Object.entries(cert.subject ?? {})
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(", ");
      resolve({ pem: pemOf(cert.raw), fingerprint: fingerprintOf(cert.raw), subject, validTo: cert.valid_to });
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * Fetch's TLS options for a pinned connection: the certificate must be the pinned one, checked
 * in the handshake, before the request (and its token) is written. A self-signed certificate is
 * trusted as its own CA; one signed by a CA must also verify against the system's CAs (and
 * NODE_EXTRA_CA_CERTS). The host name is not checked: the pin is stronger.
 */
export function pinnedTls(pin: Pin & { certificate: string }, onMismatch: (presented: string) => void) {
  return {
    ...(isSelfSigned(pin.certificate) ? { ca: [pin.certificate] } : {}),
    checkServerIdentity: (_host: string, cert: { raw?: Buffer }): Error | undefined => {
      const presented = cert.raw ? fingerprintOf(cert.raw) : "none";
      if (presented === pin.fingerprint) return undefined;
      onMismatch(presented);
      return new Error("certificate pin mismatch");
    },
  };
}

/** The refusal when the server presents another certificate than the pinned one. */
export function pinMismatch(url: string, pin: Pin, presented: string): CommandFailure {
  return new CommandFailure(
    `${url} presents certificate ${presented}, not the pinned ${pin.fingerprint} ` +
      `(from ${pin.source}): nothing sent. If the server's certificate was replaced on purpose, ` +
      `run 'agentowl login --url ${url}' again`,
    EXIT.auth,
  );
}

export interface LocalAppliance {
  /** Where this box's appliance listens, as the CLI reaches it (0.0.0.0 → 127.0.0.1). */
  url: string;
  /** Its certificate file, when this user can read it. */
  certificate: { path: string; pem: string } | null;
}

/**
 * The appliance on this box, from its settings (agentowl.toml, AGENTOWL_* variables) as
 * `agentowl serve` would read them here; null when they do not load. Run where `serve` runs
 * (the same user, the same data dir), the CLI needs no URL and trusts the certificate file.
 */
export function localAppliance(env: Record<string, string | undefined>, cwd: string): LocalAppliance | null {
  let config;
  try {
    config = loadConfig({ env, cwd, compiled: isCompiledBinary() });
  } catch {
    return null;
  }
  const https = servesHttps(config.settings.http_tls, config.http.host);
  const host =
    config.http.host === "0.0.0.0" || config.http.host === ""
      ? "127.0.0.1"
      : config.http.host === "::"
        ? "::1"
        : config.http.host;
  const url = `${https ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${config.http.port}`;
  const path = config.tls?.cert ?? join(config.dataDir, "tls", "cert.pem");
  let certificate: LocalAppliance["certificate"] = null;
  try {
    if (existsSync(path)) certificate = { path, pem: readFileSync(path, "utf8") };
  } catch {
    // not readable by this user: `agentowl login` pins it instead
  }
  return { url, certificate };
}
