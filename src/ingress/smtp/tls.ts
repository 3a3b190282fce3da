import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { writeFileDurably } from "../../core/durable-file.ts";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Config } from "../../config/index.ts";
import { type Clock, systemClock } from "../../core/clock.ts";

/**
 * The certificate STARTTLS and the HTTPS listener present (docs/api.md, §8): the configured one (tls_cert / tls_key), else a
 * self-signed one kept in `<data dir>/tls/`, created by `agentowl init` (or by the first start
 * when init was skipped). Never smtp-server's built-in certificate, whose private key is public.
 *
 * Self-signed is what a LAN appliance can have without a CA; SMTP senders encrypt
 * opportunistically and do not verify the peer, so it still keeps the traffic private.
 */
export interface TlsMaterial {
  cert: string;
  key: string;
  /** Where they came from, for the start-up log. */
  source: "configured" | "generated" | "self-signed";
  certPath: string;
}

export const tlsDir = (dataDir: string): string => join(dataDir, "tls");

/** Create the self-signed pair unless it exists; true when it was created. */
export async function ensureSelfSigned(
  dataDir: string,
  mailDomain: string,
  clock: Clock = systemClock,
): Promise<boolean> {
  const dir = tlsDir(dataDir);
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  if (existsSync(certPath) && existsSync(keyPath)) return false;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const host = hostname();
  // Loaded only to make a pair: an existing data dir never needs it (about 15 MB and 30 ms).
  const { default: selfsigned } = await import("selfsigned");
  const pems = await selfsigned.generate([{ name: "commonName", value: mailDomain }], {
    keySize: 2048,
    algorithm: "sha256",
    notAfterDate: new Date(clock.now() + 10 * 365 * 86_400_000),
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      // localhost and the loopback addresses too: on the box, `curl --cacert <data dir>/tls/cert.pem
      // https://localhost:8080/…` then verifies it like any other certificate.
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: mailDomain },
          { type: 2, value: `*.${mailDomain}` },
          { type: 2, value: host },
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
          { type: 7, ip: "::1" },
        ],
      },
    ],
  });
  // Key first, each written whole and renamed into place: a crash leaves no half pair.
  writeFileDurably(keyPath, pems.private, { mode: 0o600 });
  writeFileDurably(certPath, pems.cert, { mode: 0o644 });
  return true;
}

/** The certificate and key to serve, generating the self-signed pair if nothing else exists. */
export async function loadTls(config: Config, clock: Clock = systemClock): Promise<TlsMaterial> {
  if (config.tls) {
    return {
      cert: readFileSync(config.tls.cert, "utf8"),
      key: readFileSync(config.tls.key, "utf8"),
      source: "configured",
      certPath: config.tls.cert,
    };
  }
  const created = await ensureSelfSigned(config.dataDir, config.mailDomain, clock);
  const certPath = join(tlsDir(config.dataDir), "cert.pem");
  return {
    cert: readFileSync(certPath, "utf8"),
    key: readFileSync(join(tlsDir(config.dataDir), "key.pem"), "utf8"),
    source: created ? "generated" : "self-signed",
    certPath,
  };
}
