import type { BackupTaker } from "../api/backups.ts";
import type { AnyElysia } from "elysia";
import type { Clock } from "../core/clock.ts";
import type { Logger, LogTap } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { type Config, parseListen } from "../config/index.ts";
import { v1Api } from "../api/v1.ts";
import type { ToolListing } from "../api/agents.ts";
import type { AgentPool } from "../agents/types.ts";
import { consoleRoutes, dataDirUsage, LiveHub, type LiveOptions } from "../console/index.ts";
import type { Users } from "../users/index.ts";
import type { BindingSpec } from "../control/resources/specs.ts";
import { SpecCache } from "../control/resources/cache.ts";
import { ingressRoutes } from "../ingress/http/index.ts";
import { type AgentAddresses, type ReserveJob, SmtpIngress } from "../ingress/smtp/index.ts";
import { createHttpApp, type ReadyCheck } from "../server/server.ts";
import { servePlain } from "../server/plain.ts";
import { isLoopback, servesHttps } from "../server/tls.ts";
import { DATABASE_FILE, type Storage } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import { COMMIT, VERSION } from "../version.ts";
import type { MailParts } from "./mail.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";
import type { Dispatch } from "./workers.ts";

/**
 * The listeners that take work in, stopped together: all stop accepting at once, and requests
 * and SMTP sessions in flight finish until the shutdown's deadline. Holds only those that are
 * listening, so a start-up that fails half-way closes exactly those.
 */
class Listeners {
  http: AnyElysia | null = null;
  plain: ReturnType<typeof servePlain> | null = null;
  smtp: SmtpIngress | null = null;
  live: LiveHub | null = null;

  constructor(private readonly logTap: LogTap | null) {}

  async stop(shutdown: Shutdown): Promise<void> {
    // Live log streams and the console's live streams never finish on their own: end them first.
    this.logTap?.closeAll();
    this.live?.close();
    const { http, plain, smtp } = this;
    const drained = await Promise.race([
      Promise.all([http?.stop(false), plain?.stop(false), smtp?.close(shutdown.deadline)]).then(() => true),
      Bun.sleep(shutdown.left()).then(() => false),
    ]);
    if (!drained) {
      shutdown.forced = true;
      await Promise.all([http?.stop(true), plain?.stop(true)]);
    }
  }
}

export interface Listening {
  http: AnyElysia;
  /** Base URL of the HTTP listener. */
  url: string;
  /** Base URL of the plain-HTTP listener, when there is one. */
  plainUrl: string | null;
  smtp: { host: string; port: number };
}

const hostOf = (h: string | undefined) => (h?.includes(":") ? `[${h}]` : h);

/** The one HTTP app (health, /v1, ingress, console) on its listeners, and the SMTP listener. */
export async function startListeners(
  deps: {
    config: Config;
    log: Logger;
    clock: Clock;
    metrics: Metrics;
    storage: Storage;
    vault: Vault;
    dispatch: Dispatch;
    mail: MailParts;
    logTap: LogTap | null;
    ready: () => Promise<Record<string, ReadyCheck>>;
    /** Console users and their sessions: /v1/users and the console's sign-in share them. */
    users: Users;
    /** The console's live streams: limits and ping interval (tests shorten them). */
    live?: Partial<LiveOptions>;
    /** The agent pool and its tool plugins: /v1/agents, /v1/tools and the console's agents page. */
    agents?: AgentPool | null;
    tools?: () => readonly ToolListing[];
    /** Addresses of the agents' active email tools: the SMTP recipient check accepts them. */
    agentAddresses?: AgentAddresses;
    /** A place in this node's job runner: an accepted message's job starts there at once. */
    reserveJob?: ReserveJob;
    /** POST /v1/backups (src/backup/service.ts). */
    backups?: BackupTaker;
  },
  stack: StopStack<Shutdown>,
): Promise<Listening> {
  const { config, log, clock, metrics, storage, vault, dispatch, mail } = deps;
  const listeners = stack.add("listeners", new Listeners(deps.logTap), (l, shutdown) => l.stop(shutdown));
  const live = new LiveHub(storage, deps.users, deps.live, log.child({ component: "console" }));
  listeners.live = live;
  const ingress = ingressRoutes({
    config,
    storage,
    vault,
    metrics,
    log: log.child({ component: "ingress" }),
    routing: dispatch.inline,
    clock,
  });
  const http = createHttpApp({
    log: log.child({ component: "http" }),
    metrics,
    version: `${VERSION}+${COMMIT}`,
    ready: deps.ready,
    routes: ingress.routes,
  })
    .use(
      v1Api({
        storage,
        clock,
        vault,
        dispatch,
        logTap: deps.logTap,
        users: deps.users,
        agents: deps.agents ?? null,
        ...(deps.tools ? { tools: deps.tools } : {}),
        backups: deps.backups ?? null,
      }),
    )
    .use(ingress.app)
    .use(
      consoleRoutes({
        storage,
        clock,
        auth: deps.users,
        appliance: config.settings.mail_domain,
        bootstrapToken: config.bootstrapToken,
        inboxWindowMs: config.inboxWindowMs,
        circuits: () => dispatch.breakers.troubled(),
        log: log.child({ component: "console" }),
        dispatch,
        vault,
        logTap: deps.logTap,
        live,
        usage: () => dataDirUsage(config.dataDir, DATABASE_FILE, () => mail.spool.size()),
        agents: deps.agents ?? null,
      }),
    );
  // docs/api.md: HTTPS with the STARTTLS certificate, plain HTTP on loopback (http_tls) and on the
  // optional plain listener, which serves the same app to loopback and opted-in webhooks only.
  const https = servesHttps(config.settings.http_tls, config.http.host);
  const plainListen = config.settings.http_plain_listen ? parseListen(config.settings.http_plain_listen) : null;
  let url: string;
  let listening = config.settings.http_listen;
  try {
    // Elysia turns SO_REUSEPORT on, which would let a second appliance share the port silently.
    http.listen({
      hostname: config.http.host,
      port: config.http.port,
      reusePort: false,
      ...(https ? { tls: { cert: mail.tls.cert, key: mail.tls.key } } : {}),
    });
    listeners.http = http;
    url = `${https ? "https" : "http"}://${hostOf(http.server!.hostname)}:${http.server!.port}`;
    if (plainListen) {
      listening = config.settings.http_plain_listen!;
      const bindings = new SpecCache<BindingSpec>(storage.resources, "bindings");
      listeners.plain = servePlain({
        hostname: plainListen.host,
        port: plainListen.port,
        fetch: (request) => http.fetch(request),
        mainUrl: url,
        allowsPlain: async (tenant, binding) => {
          const spec = await bindings.get(tenant, binding).catch(() => null);
          return spec?.type === "webhook" && spec.plain_http === true;
        },
      });
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new Error(`cannot listen on ${listening}: ${code}`, { cause: e });
  }
  const plain = listeners.plain;
  const plainUrl = plain ? `http://${hostOf(plain.hostname)}:${plain.port}` : null;
  if (!https && !isLoopback(config.http.host))
    log.warn("plain HTTP on a non-loopback address (http_tls = off): API tokens travel in clear", {
      http_listen: config.settings.http_listen,
    });

  const smtp = new SmtpIngress({
    config,
    storage,
    spool: mail.spool,
    tls: mail.tls,
    log: log.child({ component: "smtp" }),
    metrics,
    clock,
    agentAddresses: deps.agentAddresses,
    reserveJob: deps.reserveJob,
  });
  let port: number;
  try {
    port = await smtp.listen();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new Error(`cannot listen on ${config.settings.smtp_listen}: ${code}`, { cause: e });
  }
  listeners.smtp = smtp;
  return { http, url, plainUrl, smtp: { host: config.smtp.host, port } };
}
