import { FormatRegistry, type Static, Type } from "@sinclair/typebox";
import { parseCron } from "../core/cron.ts";
import { LOG_LEVELS } from "../core/log.ts";

/**
 * Every setting of the appliance, in one place: its TOML key, its environment variable, its
 * default, whether it is a secret, and the sentence the docs and `config show` print for it.
 * `docs/configuration.md` is generated from this file (`bun scripts/config-docs.ts`).
 */

export interface Listen {
  host: string;
  port: number;
}

/** `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function parseListen(value: string): Listen | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(value);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `500ms`, `10s`, `5m`, `24h`, `7d` → milliseconds. */
export function parseDuration(value: string): number | null {
  const m = DURATION.exec(value);
  if (!m) return null;
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/i;

// TypeBox's format registry is global and Elysia and its OpenAPI plugin fill it too (their
// "duration" is ISO 8601, P1D): our formats carry a prefix so that no library can replace them.
FormatRegistry.Set("agentowl-listen", (v) => parseListen(v) !== null);
FormatRegistry.Set("agentowl-duration", (v) => parseDuration(v) !== null);
FormatRegistry.Set("agentowl-host-port", (v) => HOST_PORT.test(v));
FormatRegistry.Set("agentowl-domain", (v) => DOMAIN.test(v));
FormatRegistry.Set("agentowl-cron", (v) => parseCron(v) !== null);

interface SettingMeta {
  /** Environment variable that overrides the TOML key. */
  env: string;
  /** Shown in the docs and in error messages: what a good value looks like. */
  hint: string;
  description: string;
  secret?: boolean;
  /** Where the default is computed rather than fixed (shown in the docs instead of a value). */
  defaultText?: string;
}

const setting = <T extends object>(schema: T, meta: SettingMeta): T => Object.assign(schema, { meta });

export const settingsSchema = Type.Object(
  {
    data_dir: setting(Type.String({ minLength: 1 }), {
      env: "AGENTOWL_DATA_DIR",
      hint: "a directory path",
      description: "Where the database, spool, blobs and vault key live.",
      defaultText:
        "`./data` from the source tree; `/var/lib/agentowl` (Linux) or `/usr/local/var/agentowl` (macOS) for the compiled binary",
    }),
    database_url: setting(Type.Optional(Type.String({ pattern: "^postgres(ql)?://\\S+$" })), {
      env: "AGENTOWL_DATABASE_URL",
      hint: "postgres://user:password@host:5432/database",
      description:
        "A PostgreSQL database to keep the state in instead of SQLite in the data dir (docs/architecture.md#the-postgresql-driver).",
      secret: true,
      defaultText: "unset: SQLite in the data dir",
    }),
    http_listen: setting(Type.String({ format: "agentowl-listen", default: "0.0.0.0:8080" }), {
      env: "AGENTOWL_HTTP_LISTEN",
      hint: "host:port, e.g. 0.0.0.0:8080 or [::1]:8080",
      description: "API, ingress, console, health and metrics listener.",
    }),
    http_tls: setting(
      Type.Union([Type.Literal("auto"), Type.Literal("on"), Type.Literal("off")], { default: "auto" }),
      {
        env: "AGENTOWL_HTTP_TLS",
        hint: "auto | on | off",
        description:
          "HTTPS on http_listen, with tls_cert/tls_key or else the generated self-signed pair. " +
          "`auto`: HTTPS unless http_listen is a loopback address (127.0.0.0/8, ::1, localhost); " +
          "`on`: always; `off`: plain HTTP (a warning is logged when the address is not loopback: " +
          "API tokens would travel in clear).",
      },
    ),
    http_plain_listen: setting(Type.Optional(Type.String({ format: "agentowl-listen" })), {
      env: "AGENTOWL_HTTP_PLAIN_LISTEN",
      hint: "host:port, e.g. 0.0.0.0:8081",
      description:
        "A second, plain-HTTP listener for LAN systems that cannot do HTTPS. Clients other than " +
        "loopback get only `/healthz` and `POST /ingress/webhook/:tenant/:binding` of bindings " +
        "that set `plain_http: true`; everything else answers 403. Loopback clients get everything.",
      defaultText: "unset (no plain listener)",
    }),
    smtp_listen: setting(Type.String({ format: "agentowl-listen", default: "0.0.0.0:2525" }), {
      env: "AGENTOWL_SMTP_LISTEN",
      hint: "host:port, e.g. 0.0.0.0:25",
      description: "SMTP listener (install.sh sets :25).",
    }),
    mail_domain: setting(Type.String({ format: "agentowl-domain", default: "agentowl.lan" }), {
      env: "AGENTOWL_MAIL_DOMAIN",
      hint: "a domain name, e.g. agentowl.lan",
      description: "Mail is addressed to `agent@tenant.<mail_domain>`.",
    }),
    tls_cert: setting(Type.Optional(Type.String({ minLength: 1 })), {
      env: "AGENTOWL_TLS_CERT",
      hint: "a PEM certificate file path",
      description: "Certificate for STARTTLS and HTTPS (see http_tls); set together with tls_key.",
      defaultText: "self-signed, generated by `agentowl init`",
    }),
    tls_key: setting(Type.Optional(Type.String({ minLength: 1 })), {
      env: "AGENTOWL_TLS_KEY",
      hint: "a PEM private key file path",
      description: "Private key for tls_cert.",
      defaultText: "self-signed, generated by `agentowl init`",
    }),
    master_key_file: setting(Type.Optional(Type.String({ minLength: 1 })), {
      env: "AGENTOWL_MASTER_KEY_FILE",
      hint: "a file path",
      description: "Vault key-encryption key (32 random bytes, mode 0600).",
      defaultText: "`<data_dir>/master.key`",
    }),
    audit_checkpoint_entries: setting(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1000 }), {
      env: "AGENTOWL_AUDIT_CHECKPOINT_ENTRIES",
      hint: "an integer from 1 to 1000000",
      description:
        "The audit chain's head is checkpointed (signed, to `<data_dir>/audit/checkpoints.jsonl` " +
        "and to the log) once this many entries were committed since the last checkpoint, besides " +
        "every `audit_checkpoint_interval` and at shutdown. Entries after the latest checkpoint " +
        "are not yet anchored.",
    }),
    audit_checkpoint_interval: setting(Type.String({ format: "agentowl-duration", default: "1m" }), {
      env: "AGENTOWL_AUDIT_CHECKPOINT_INTERVAL",
      hint: "a duration such as 10s or 1m",
      description:
        "How often the audit chain's head is checkpointed when entries were added since the last checkpoint.",
    }),
    backup_schedule: setting(Type.String({ format: "agentowl-cron", default: "17 3 * * *" }), {
      env: "AGENTOWL_BACKUP_SCHEDULE",
      hint: "five cron fields, e.g. 17 3 * * * (local time)",
      description:
        "When the nightly backup runs (cron: minute hour day-of-month month day-of-week, local time); " +
        "docs/operations.md#backups.",
    }),
    backup_dir: setting(Type.Optional(Type.String({ minLength: 1 })), {
      env: "AGENTOWL_BACKUP_DIR",
      hint: "a directory path",
      description:
        "Where backups are written (0700). Put it on another disk than the data dir: a backup on the " +
        "disk that failed is lost with it.",
      defaultText: "`<data_dir>/backups`",
    }),
    backup_keep: setting(Type.Integer({ minimum: 0, maximum: 10_000, default: 7 }), {
      env: "AGENTOWL_BACKUP_KEEP",
      hint: "an integer from 0 to 10000",
      description:
        "How many backups in backup_dir the nightly job keeps (the newest; older ones are removed after each " +
        "backup). 0 turns the nightly backup off.",
    }),
    backup_max_rate: setting(Type.Integer({ minimum: 0, maximum: 100_000, default: 64 }), {
      env: "AGENTOWL_BACKUP_MAX_RATE",
      hint: "MiB per second, an integer from 0 to 100000",
      description:
        "The most a backup writes per second, in MiB (the nightly job's, POST /v1/backups'), so that ingest " +
        "keeps most of the disk and CPU while it runs; 0: no cap. docs/operations.md#backups.",
    }),
    bootstrap_token: setting(Type.Optional(Type.String({ minLength: 24, pattern: "^\\S+$" })), {
      env: "AGENTOWL_BOOTSTRAP_TOKEN",
      hint: "at least 24 characters without spaces",
      description: "When set and no admin exists, becomes the first admin API token.",
      secret: true,
      defaultText: "unset",
    }),
    console_session_idle: setting(Type.String({ format: "agentowl-duration", default: "30m" }), {
      env: "AGENTOWL_CONSOLE_SESSION_IDLE",
      hint: "a duration such as 15m or 1h",
      description:
        "A console session not used for this long ends; the person signs in again (docs/console.md#users-and-sign-in).",
    }),
    console_session_max: setting(Type.String({ format: "agentowl-duration", default: "12h" }), {
      env: "AGENTOWL_CONSOLE_SESSION_MAX",
      hint: "a duration such as 8h or 12h",
      description: "A console session ends this long after its sign-in, however active it is.",
    }),
    dns_servers: setting(Type.Optional(Type.Array(Type.String({ format: "agentowl-host-port" }))), {
      env: "AGENTOWL_DNS_SERVERS",
      hint: "host[:port] entries, comma-separated in the environment",
      description: "DNS servers for SPF/DKIM/DMARC/ARC look-ups.",
      defaultText: "the system's resolvers",
    }),
    dns_timeout: setting(Type.String({ format: "agentowl-duration", default: "2s" }), {
      env: "AGENTOWL_DNS_TIMEOUT",
      hint: "a duration such as 2s",
      description: "How long one DNS query may take; past it, the verdict that needed it is `temperror`.",
    }),
    smtp_max_message_size: setting(
      Type.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024, default: 25 * 1024 * 1024 }),
      {
        env: "AGENTOWL_SMTP_MAX_MESSAGE_SIZE",
        hint: "bytes, from 1024 to 1073741824",
        description:
          "Largest message accepted (announced in EHLO SIZE); larger ones get `552 5.3.4`, also when the client announced less.",
      },
    ),
    smtp_max_recipients: setting(Type.Integer({ minimum: 1, maximum: 10_000, default: 100 }), {
      env: "AGENTOWL_SMTP_MAX_RECIPIENTS",
      hint: "an integer from 1 to 10000",
      description:
        "Recipients per message; the next one gets `452 4.5.3` (the client sends the rest in another transaction).",
    }),
    smtp_max_connections: setting(Type.Integer({ minimum: 1, maximum: 100_000, default: 500 }), {
      env: "AGENTOWL_SMTP_MAX_CONNECTIONS",
      hint: "an integer from 1 to 100000",
      description: "SMTP connections open at once; one more is answered `421` and closed.",
    }),
    smtp_max_connections_per_ip: setting(Type.Integer({ minimum: 1, maximum: 100_000, default: 100 }), {
      env: "AGENTOWL_SMTP_MAX_CONNECTIONS_PER_IP",
      hint: "an integer from 1 to 100000",
      description: "SMTP connections open at once from one address; one more is answered `421 4.7.0` and closed.",
    }),
    smtp_idle_timeout: setting(Type.String({ format: "agentowl-duration", default: "60s" }), {
      env: "AGENTOWL_SMTP_IDLE_TIMEOUT",
      hint: "a duration such as 60s or 5m",
      description:
        "How long an SMTP client may take for its next command, counted from its last transaction " +
        "command (EHLO/HELO, STARTTLS, an accepted MAIL or RCPT, the end of DATA; NOOP, RSET, " +
        "HELP, VRFY and refused commands do not count), and between two chunks of a message in " +
        "DATA; then `421 4.4.2` and the connection closes. Shorter than RFC 5321 §4.5.3.2's 5 " +
        "minutes on purpose: idle connections count against `smtp_max_connections`.",
    }),
    smtp_greeting_timeout: setting(Type.String({ format: "agentowl-duration", default: "30s" }), {
      env: "AGENTOWL_SMTP_GREETING_TIMEOUT",
      hint: "a duration such as 10s or 30s",
      description:
        "How long a new SMTP connection may wait before its first EHLO or HELO (NOOP and the like do not count); then `421 4.4.2` and the connection closes.",
    }),
    smtp_data_timeout: setting(Type.String({ format: "agentowl-duration", default: "10m" }), {
      env: "AGENTOWL_SMTP_DATA_TIMEOUT",
      hint: "a duration such as 5m or 10m",
      description:
        "How long one message's DATA may take in all, however steadily its chunks arrive; then `421 4.4.2`, nothing is stored, and the connection closes.",
    }),
    smtp_max_commands: setting(Type.Integer({ minimum: 10, maximum: 10_000_000, default: 1000 }), {
      env: "AGENTOWL_SMTP_MAX_COMMANDS",
      hint: "an integer from 10 to 10000000",
      description:
        "Commands one SMTP connection may send without a message being accepted (each accepted " +
        "message starts the count again); the next one is answered `421 4.7.0` and the connection closes.",
    }),
    smtp_shed_threshold: setting(Type.Integer({ minimum: 1, maximum: 100, default: 80 }), {
      env: "AGENTOWL_SMTP_SHED_THRESHOLD",
      hint: "a percentage of smtp_max_connections, from 1 to 100",
      description:
        "Above this share of `smtp_max_connections`, each new connection closes (`421 4.7.0`) one " +
        "that has no transaction under way (no accepted RCPT, not in DATA), from the address with " +
        "the most connections and the longest idle first, so that idle connections cannot lock new senders out.",
    }),
    smtp_greeting_delay: setting(Type.String({ format: "agentowl-duration", default: "100ms" }), {
      env: "AGENTOWL_SMTP_GREETING_DELAY",
      hint: "a duration such as 0ms or 100ms",
      description:
        "Pause before the 220 greeting; a client that talks before it is refused (`421`), which " +
        "stops much spamware. Each new connection waits this long: set 0ms when only trusted LAN relays connect.",
    }),
    smtp_rate_per_ip: setting(Type.Integer({ minimum: 1, maximum: 10_000_000, default: 600 }), {
      env: "AGENTOWL_SMTP_RATE_PER_IP",
      hint: "messages per minute",
      description:
        "Messages one client address may send per minute (a token bucket with a minute's burst); past it: `421 4.7.0`, connection closed.",
    }),
    smtp_rate_per_tenant: setting(Type.Integer({ minimum: 1, maximum: 10_000_000, default: 3000 }), {
      env: "AGENTOWL_SMTP_RATE_PER_TENANT",
      hint: "messages per minute",
      description:
        "Messages one tenant may receive per minute (a token bucket with a minute's burst); past it its recipients get `451 4.7.1`.",
    }),
    spool_retention: setting(Type.String({ format: "agentowl-duration", default: "30d" }), {
      env: "AGENTOWL_SPOOL_RETENTION",
      hint: "a duration such as 7d or 30d",
      description:
        "Raw messages stay in the spool this long after they arrive (the events, their parsed content and attachments stay).",
    }),
    ingress_rate_per_binding: setting(Type.Integer({ minimum: 1, maximum: 10_000_000, default: 6000 }), {
      env: "AGENTOWL_INGRESS_RATE_PER_BINDING",
      hint: "requests per minute",
      description:
        "Webhook and Telnyx requests one binding may take per minute unless it says rate_per_minute; past it: 429 with Retry-After.",
    }),
    ingress_auth_failures_per_address: setting(Type.Integer({ minimum: 1, maximum: 10_000_000, default: 30 }), {
      env: "AGENTOWL_INGRESS_AUTH_FAILURES_PER_ADDRESS",
      hint: "requests per minute",
      description:
        "Webhook and Telnyx requests from one address that may fail verification per minute (a " +
        "token bucket with a minute's burst); past it that address gets 429 with Retry-After " +
        "before anything is verified. Failed requests never spend a binding's " +
        "`ingress_rate_per_binding`, so a forger locks out only itself.",
    }),
    ingress_queue_high_water: setting(Type.Integer({ minimum: 1, maximum: 100_000_000, default: 100_000 }), {
      env: "AGENTOWL_INGRESS_QUEUE_HIGH_WATER",
      hint: "a number of jobs",
      description:
        "When this many jobs wait in the queue (ready or scheduled; sampled every 0.5 s from the " +
        "ready index, so finished jobs kept for `queue_retention` cost nothing), HTTP ingress " +
        "answers 503 with Retry-After instead of taking more.",
    }),
    log_level: setting(
      Type.Union(
        LOG_LEVELS.map((l) => Type.Literal(l)),
        { default: "info" },
      ),
      {
        env: "AGENTOWL_LOG_LEVEL",
        hint: LOG_LEVELS.join(" | "),
        description: "Threshold of the JSON logs on stdout.",
      },
    ),
    shutdown_timeout: setting(Type.String({ format: "agentowl-duration", default: "10s" }), {
      env: "AGENTOWL_SHUTDOWN_TIMEOUT",
      hint: "a duration such as 500ms, 10s, 5m",
      description: "On SIGTERM/SIGINT: how long in-flight requests and jobs may take to finish.",
    }),
    commit_window: setting(Type.String({ format: "agentowl-duration", default: "0ms" }), {
      env: "AGENTOWL_COMMIT_WINDOW",
      hint: "a duration such as 0ms or 2ms",
      description:
        "Group commit: how long the committer waits for more writes before it commits. 0ms commits " +
        "at the end of the current event-loop turn, which already gathers every write that arrived " +
        "during the previous commit.",
    }),
    commit_max_batch: setting(Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 }), {
      env: "AGENTOWL_COMMIT_MAX_BATCH",
      hint: "an integer from 1 to 10000",
      description: "Group commit: most units of work in one transaction.",
    }),
    worker_concurrency: setting(Type.Integer({ minimum: 1, maximum: 1000, default: 64 }), {
      env: "AGENTOWL_WORKER_CONCURRENCY",
      hint: "an integer from 1 to 1000",
      description:
        "Jobs the job runner works on at once. Most wait on an endpoint or a commit (deliveries), " +
        "and MIME parsing has its own thread per core, so this is well above the core count.",
    }),
    queue_visibility_timeout: setting(Type.String({ format: "agentowl-duration", default: "5m" }), {
      env: "AGENTOWL_QUEUE_VISIBILITY_TIMEOUT",
      hint: "a duration such as 30s or 5m",
      description: "A leased job whose worker dies becomes available again after this long.",
    }),
    queue_retention: setting(Type.String({ format: "agentowl-duration", default: "7d" }), {
      env: "AGENTOWL_QUEUE_RETENTION",
      hint: "a duration such as 24h or 7d",
      description:
        "Finished jobs and published outbox entries are purged after this long; the newest job stays, whatever its age, so that no job id is handed out twice.",
    }),
    event_retention: setting(Type.String({ format: "agentowl-duration", default: "90d" }), {
      env: "AGENTOWL_EVENT_RETENTION",
      hint: "a duration such as 30d or 365d",
      description:
        "Events older than this leave the database with their deliveries and attempts (the hourly retention sweep); " +
        "a tenant's `retention.events` overrides it (docs/operations.md#retention).",
    }),
    content_retention: setting(Type.String({ format: "agentowl-duration", default: "30d" }), {
      env: "AGENTOWL_CONTENT_RETENTION",
      hint: "a duration such as 7d or 30d",
      description:
        "An event's parsed content (bodies, headers, attachment files) is dropped after this long; the event's " +
        "metadata stays until `event_retention`. A tenant's `retention.content` overrides it.",
    }),
    attempt_retention: setting(Type.String({ format: "agentowl-duration", default: "30d" }), {
      env: "AGENTOWL_ATTEMPT_RETENTION",
      hint: "a duration such as 7d or 30d",
      description:
        "Delivery attempts (status, error, response excerpt) older than this are deleted; the delivery's state stays. " +
        "A tenant's `retention.attempts` overrides it.",
    }),
    audit_retention: setting(Type.String({ format: "agentowl-duration", default: "365d" }), {
      env: "AGENTOWL_AUDIT_RETENTION",
      hint: "a duration such as 90d or 365d",
      description:
        "Audit entries older than this are pruned from the start of the chain, under a signed checkpoint of the pruned " +
        "prefix, so the rest still verifies. A tenant's `retention.audit` overrides it for its entries.",
    }),
    disk_warn_free: setting(Type.String({ pattern: "^(\\d{1,2}(\\.\\d+)?%|\\d+)$", default: "10%" }), {
      env: "AGENTOWL_DISK_WARN_FREE",
      hint: "a percentage such as 10% or a number of bytes",
      description:
        "Below this much free space on the data dir's filesystem, /metrics (`agentowl_disk_free_bytes`) and the log warn, once per crossing.",
    }),
    disk_fail_free: setting(Type.String({ pattern: "^(\\d{1,2}(\\.\\d+)?%|\\d+)$", default: "2%" }), {
      env: "AGENTOWL_DISK_FAIL_FREE",
      hint: "a percentage such as 2% or a number of bytes",
      description:
        "Below this much free space on the data dir's filesystem, /readyz answers 503 (check `disk`) before the disk is full.",
    }),
    inbox_window: setting(Type.String({ format: "agentowl-duration", default: "24h" }), {
      env: "AGENTOWL_INBOX_WINDOW",
      hint: "a duration such as 24h or 7d",
      description: "How far back the console's per-tenant inbox lists mail.",
    }),
    agents_min_idle: setting(Type.Integer({ minimum: 0, maximum: 1000, default: 2 }), {
      env: "AGENTOWL_AGENTS_MIN_IDLE",
      hint: "an integer from 0 to 1000",
      description:
        "Warm agent runtimes kept ready to be claimed (docs/agents.md); the tick and every claim refill the pool " +
        "to this many. `PUT /v1/agents/pool` changes it while running.",
    }),
    agents_max_runtimes: setting(Type.Integer({ minimum: 1, maximum: 10_000, default: 64 }), {
      env: "AGENTOWL_AGENTS_MAX_RUNTIMES",
      hint: "an integer from 1 to 10000",
      description:
        "Agent runtimes alive at once at most (warm, claimed and stuck ones together); a claim past it is " +
        "answered 429 with Retry-After.",
    }),
    agents_on_empty: setting(Type.Union([Type.Literal("cold"), Type.Literal("429")], { default: "cold" }), {
      env: "AGENTOWL_AGENTS_ON_EMPTY",
      hint: "cold | 429",
      description:
        "A claim while no runtime is ready: `cold` starts one for it (the answer says `cold: true`); `429` " +
        "refuses it with Retry-After (`agents_retry_after`).",
    }),
    agents_retry_after: setting(Type.String({ format: "agentowl-duration", default: "5s" }), {
      env: "AGENTOWL_AGENTS_RETRY_AFTER",
      hint: "a duration such as 5s",
      description: "The Retry-After of a claim refused because the pool was empty or full.",
    }),
    agents_tick_interval: setting(Type.String({ format: "agentowl-duration", default: "5s" }), {
      env: "AGENTOWL_AGENTS_TICK_INTERVAL",
      hint: "a duration such as 1s or 5s",
      description:
        "How often the pool checks its runtimes (a dead process, a missed heartbeat), destroys stuck ones and refills.",
    }),
    agents_stuck_timeout: setting(Type.String({ format: "agentowl-duration", default: "60s" }), {
      env: "AGENTOWL_AGENTS_STUCK_TIMEOUT",
      hint: "a duration such as 30s or 60s",
      description:
        "A runtime that sent nothing (runtimes heartbeat every 5 s) for this long is stuck: it is destroyed and replaced.",
    }),
    agents_hello_timeout: setting(Type.String({ format: "agentowl-duration", default: "10s" }), {
      env: "AGENTOWL_AGENTS_HELLO_TIMEOUT",
      hint: "a duration such as 10s",
      description:
        "A started runtime must connect to its socket and answer hello within this long, or it is destroyed.",
    }),
    agents_memory_limit: setting(
      Type.Integer({ minimum: 16 * 1024 * 1024, maximum: 64 * 1024 * 1024 * 1024, default: 256 * 1024 * 1024 }),
      {
        env: "AGENTOWL_AGENTS_MEMORY_LIMIT",
        hint: "bytes, from 16777216 (16 MiB); 268435456 is 256 MiB",
        description:
          "Memory of one agent runtime at most: cgroup memory.max where the cgroup tree is writable, else an rlimit.",
      },
    ),
    // The agents' tools and model proxy (docs/agents.md).
    agents_smarthost: setting(Type.Optional(Type.String({ format: "agentowl-host-port" })), {
      env: "AGENTOWL_AGENTS_SMARTHOST",
      hint: "host:port on the LAN, e.g. 192.168.1.10:25",
      description:
        "The mail relay agents' `email` tools send their replies through, and only there (plain " +
        "SMTP, STARTTLS when it offers it; it must be on loopback or the LAN).",
      defaultText: "unset (an email tool can receive but not send)",
    }),
    agents_model_timeout: setting(Type.String({ format: "agentowl-duration", default: "120s" }), {
      env: "AGENTOWL_AGENTS_MODEL_TIMEOUT",
      hint: "a duration such as 60s or 5m",
      description:
        "How long one `model.chat` of a runtime may take at the model server before it is answered with a timeout.",
    }),
  },
  { additionalProperties: false },
);

export type Settings = Static<typeof settingsSchema>;
export type SettingName = keyof Settings;

export function settingMeta(name: SettingName): SettingMeta {
  return (settingsSchema.properties[name] as unknown as { meta: SettingMeta }).meta;
}

export const SETTING_NAMES = Object.keys(settingsSchema.properties) as SettingName[];

/** AGENTOWL_* variables that belong to the CLI client rather than the server. */
export const CLIENT_ENV = [
  "AGENTOWL_CONFIG",
  "AGENTOWL_URL",
  "AGENTOWL_TOKEN",
  "AGENTOWL_PROFILE",
  "AGENTOWL_FINGERPRINT",
] as const;
