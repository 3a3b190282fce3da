import { join } from "node:path";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Config } from "../config/index.ts";
import { loadTls, type MessageSpool, Spool, type TlsMaterial } from "../ingress/smtp/index.ts";
import { createDnsResolver, type DnsResolver } from "../mail/dns.ts";
import type { Blobs, Storage } from "../store/index.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";

export interface MailParts {
  /** The certificate STARTTLS presents (HTTPS presents it too). */
  tls: TlsMaterial;
  spool: MessageSpool;
  blobs: Blobs;
  resolver: DnsResolver;
}

/** The SMTP pipeline's parts, with what a crash left behind in the spool and the attachments cleared. */
export async function prepareMail(
  deps: { config: Config; log: Logger; storage: Storage; clock: Clock },
  stack: StopStack<Shutdown>,
): Promise<MailParts> {
  const { config, log, storage, clock } = deps;
  let tls: TlsMaterial;
  try {
    tls = await loadTls(config, clock);
  } catch (e) {
    throw new Error(`cannot read the TLS certificate or key: ${(e as Error).message}`, { cause: e });
  }
  if (tls.source === "generated") log.info("self-signed TLS certificate created", { cert: tls.certPath });
  if (storage.spool) {
    // Several nodes: the spool is the database's, so any node's mail.process job reads any node's
    // mail; what a crash left there (bytes committed, their row not) goes with spool retention.
    const spool = stack.add("spool", storage.spool, (s) => s.close());
    return { tls, spool, blobs: storage.blobs, resolver: resolverOf(config, clock) };
  }
  const spool = stack.add("spool", new Spool(join(config.dataDir, "spool"), clock), (s) => s.close());
  const blobs = storage.blobs;
  // A put cut off by a crash left its temp file; the lock says no other process is writing one.
  const temps = await blobs.removeTemps();
  if (temps) log.info("removed unfinished attachment files", { files: temps });
  // Segments no message row refers to hold only mail that was never acknowledged (a process
  // killed between a segment's fsync and the commit of its rows, a disk that filled up): no 250
  // was sent for any of it, so the senders send it again.
  const orphans = spool.removeUnreferenced(await storage.mail.listSpoolSegments());
  if (orphans.segments)
    log.info("removed spool segments no message refers to", { segments: orphans.segments, bytes: orphans.bytes });
  return { tls, spool, blobs, resolver: resolverOf(config, clock) };
}

const resolverOf = (config: Config, clock: Clock): DnsResolver =>
  createDnsResolver({
    servers: config.dnsServers ? [...config.dnsServers] : undefined,
    timeoutMs: config.dnsTimeoutMs,
    clock,
  });
