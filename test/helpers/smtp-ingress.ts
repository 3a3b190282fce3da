import { dirname, join } from "node:path";
import { loadConfig } from "../../src/config/index.ts";
import type { Clock } from "../../src/core/clock.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { loadTls, SmtpIngress, Spool } from "../../src/ingress/smtp/index.ts";
import type { MailRecipient, SqliteStorage } from "../../src/store/index.ts";
import { tempStorage } from "./storage.ts";

/** agent hello of tenant beta, through its email binding `mail`: the recipient stage tests hand on. */
export const TEST_RECIPIENT: MailRecipient = {
  address: "hello@beta.agentowl.lan",
  tenant: "beta",
  agent: "hello",
  tag: null,
  binding: "mail",
};

/** An email binding of `tenant` that lists `agents`, committed the way the control plane commits it. */
export async function bindEmail(storage: SqliteStorage, tenant: string, name: string, agents: string[]): Promise<void> {
  await storage.resources.transact((tx) =>
    storage.resources.putTx(
      tx,
      { tenant, kind: "bindings", name },
      { name, type: "email", addresses: agents },
      { mode: "upsert", actor: "test" },
    ),
  );
}

/**
 * The SMTP listener alone on 127.0.0.1 port 0, over a real SQLite storage, spool and
 * certificate in a temp data dir: no HTTP, no job runner, so a queued message stays queued.
 * `env` adds or overrides settings (AGENTOWL_SMTP_…); the greeting delay is 0.
 */
export async function startSmtpIngress(opts: { env?: Record<string, string>; clock?: Clock } = {}) {
  const storage = tempStorage();
  const config = loadConfig({
    env: {
      AGENTOWL_DATA_DIR: storage.dir,
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_GREETING_DELAY: "0ms",
      ...opts.env,
    },
    cwd: dirname(storage.dir),
  });
  const spool = new Spool(join(storage.dir, "spool"), opts.clock);
  const lines: string[] = [];
  const metrics = new Metrics();
  const ingress = new SmtpIngress({
    config,
    storage,
    spool,
    tls: await loadTls(config),
    log: createLogger({ level: "debug", redactor: new Redactor(), sink: (l) => lines.push(l) }),
    metrics,
    clock: opts.clock,
  });
  const port = await ingress.listen();
  return {
    config,
    storage,
    spool,
    ingress,
    metrics,
    port,
    /** The log lines so far, parsed. */
    logged: (): Record<string, unknown>[] => lines.map((l) => JSON.parse(l)),
    async stop(): Promise<void> {
      await ingress.close();
      await spool.close();
      await storage.dispose();
    },
  };
}
