import { existsSync, readFileSync } from "node:fs";
import type { FreeSpace } from "../core/disk.ts";
import { isAbsolute, join, resolve } from "node:path";
import { Value } from "@sinclair/typebox/value";
import { parse as parseToml } from "smol-toml";
import type { LogLevel } from "../core/log.ts";
import { AppError } from "../errors/index.ts";
import { closest } from "../errors/index.ts";
import {
  CLIENT_ENV,
  type Listen,
  parseDuration,
  parseListen,
  SETTING_NAMES,
  type SettingName,
  type Settings,
  settingMeta,
  settingsSchema,
} from "./schema.ts";

export type SettingSource = "default" | "file" | "env";

/** The validated, parsed, frozen settings the rest of the appliance reads. */
const parseFreeSpace = (text: string): FreeSpace =>
  text.endsWith("%") ? { percent: Number(text.slice(0, -1)) } : { bytes: Number(text) };

/** The retention of what a tenant's events leave behind, in ms (a tenant's `retention` overrides each). */
export interface RetentionDefaults {
  readonly eventsMs: number;
  readonly contentMs: number;
  readonly attemptsMs: number;
  readonly auditMs: number;
}

export interface Config {
  readonly dataDir: string;
  /** Per-tenant retention defaults (docs/operations.md#retention). */
  readonly retention: RetentionDefaults;
  /** Free-space thresholds of the data dir's filesystem: warn (metrics, log) and fail (/readyz). */
  readonly disk: { readonly warnFree: FreeSpace; readonly failFree: FreeSpace };
  /** How far back the console's inbox lists mail. */
  readonly inboxWindowMs: number;
  readonly http: Listen;
  readonly smtp: Listen;
  readonly mailDomain: string;
  readonly tls: { readonly cert: string; readonly key: string } | null;
  readonly masterKeyFile: string;
  readonly auditCheckpoint: { readonly everyEntries: number; readonly everyMs: number };
  readonly bootstrapToken: string | null;
  /** PostgreSQL instead of SQLite when set (it holds a password: a secret). */
  readonly databaseUrl: string | null;
  /** Console sessions end after this long unused (idle), and this long after sign-in (max). */
  readonly consoleSession: { readonly idleMs: number; readonly maxMs: number };
  readonly dnsServers: readonly string[] | null;
  readonly dnsTimeoutMs: number;
  readonly smtpLimits: {
    readonly maxMessageBytes: number;
    readonly maxRecipients: number;
    readonly maxConnections: number;
    readonly maxConnectionsPerIp: number;
    readonly idleTimeoutMs: number;
    readonly greetingTimeoutMs: number;
    readonly dataTimeoutMs: number;
    readonly maxCommands: number;
    /** Percent of maxConnections above which idle connections are shed. */
    readonly shedThreshold: number;
    readonly greetingDelayMs: number;
    readonly ratePerIp: number;
    readonly ratePerTenant: number;
  };
  readonly spoolRetentionMs: number;
  readonly ingressRatePerBinding: number;
  readonly ingressAuthFailuresPerAddress: number;
  readonly ingressQueueHighWater: number;
  readonly logLevel: LogLevel;
  readonly shutdownTimeoutMs: number;
  readonly commitWindowMs: number;
  readonly commitMaxBatch: number;
  readonly workerConcurrency: number;
  readonly visibilityTimeoutMs: number;
  readonly retentionMs: number;
  /** The nightly backup (docs/operations.md#backups). */
  readonly backup: {
    readonly schedule: string;
    readonly dir: string;
    readonly keep: number;
    /** `backup_max_rate` in bytes per second; 0: no cap. */
    readonly maxBytesPerSecond: number;
  };
  /** The agent pool (docs/agents.md). */
  readonly agents: {
    readonly minIdle: number;
    readonly maxRuntimes: number;
    readonly onEmpty: "cold" | "429";
    readonly retryAfterMs: number;
    readonly tickMs: number;
    readonly stuckTimeoutMs: number;
    readonly helloTimeoutMs: number;
    readonly memoryBytes: number;
  };
  /** The effective raw settings, for `config show`. */
  readonly settings: Readonly<Settings>;
  readonly sources: Readonly<Record<SettingName, SettingSource>>;
  /** The TOML file that was read, if any. */
  readonly file: string | null;
}

export interface LoadOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** True when running as the compiled `agentowl` binary (installed), false from source. */
  compiled?: boolean;
  platform?: NodeJS.Platform;
}

/** Where the data dir is when nothing says otherwise (docs/architecture.md). */
export function defaultDataDir(opts: { cwd: string; compiled: boolean; platform: NodeJS.Platform }): string {
  if (!opts.compiled) return join(opts.cwd, "data");
  return opts.platform === "darwin" ? "/usr/local/var/agentowl" : "/var/lib/agentowl";
}

const fail = (detail: string): never => {
  throw new AppError("config_invalid", detail);
};

function describeSource(name: SettingName, source: SettingSource, file: string | null): string {
  const meta = settingMeta(name);
  if (source === "env") return `${meta.env} (environment)`;
  if (source === "file") return `${name} in ${file}`;
  return `${name} (default)`;
}

const INTEGER_SETTINGS = SETTING_NAMES.filter(
  (n) => (settingsSchema.properties[n] as { type?: unknown }).type === "integer",
);

/** A whole number written as such; anything else is left as it was, for validation to refuse. */
function strictInteger(value: unknown): unknown {
  return typeof value === "string" && /^\s*[+-]?\d+\s*$/.test(value) ? Number(value) : value;
}

function readToml(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    return fail(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const err = e as { line?: number; column?: number; message: string };
    const first = err.message.split("\n")[0];
    return fail(`config file ${path}:${err.line ?? "?"}:${err.column ?? "?"}: ${first}`);
  }
}

/**
 * Settings come from defaults, then `agentowl.toml`, then AGENTOWL_* variables. Anything
 * unknown or invalid stops here with one line naming the setting and where it came from.
 */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const platform = opts.platform ?? process.platform;
  const envOf = new Map(SETTING_NAMES.map((n) => [settingMeta(n).env, n] as const));

  for (const key of Object.keys(env)) {
    if (!key.startsWith("AGENTOWL_") || envOf.has(key) || (CLIENT_ENV as readonly string[]).includes(key)) continue;
    const hint = closest(key, [...envOf.keys()]);
    fail(`${key}: unknown setting${hint ? ` (did you mean ${hint}?)` : ""}`);
  }

  const dataDirEnv = env.AGENTOWL_DATA_DIR;
  const configPath = env.AGENTOWL_CONFIG
    ? resolve(cwd, env.AGENTOWL_CONFIG)
    : join(resolve(cwd, dataDirEnv || defaultDataDir({ cwd, compiled: !!opts.compiled, platform })), "agentowl.toml");
  if (env.AGENTOWL_CONFIG && !existsSync(configPath)) fail(`AGENTOWL_CONFIG: config file ${configPath} does not exist`);
  const file = existsSync(configPath) ? configPath : null;
  const fromFile = file ? readToml(file) : {};

  const raw: Record<string, unknown> = {};
  const sources = {} as Record<SettingName, SettingSource>;
  for (const key of Object.keys(fromFile)) {
    if (!(SETTING_NAMES as string[]).includes(key)) {
      const hint = closest(key, SETTING_NAMES);
      fail(`${key} in ${file}: unknown setting${hint ? ` (did you mean ${hint}?)` : ""}`);
    }
  }
  for (const name of SETTING_NAMES) {
    const envValue = env[settingMeta(name).env];
    if (envValue !== undefined && envValue !== "") {
      raw[name] =
        name === "dns_servers"
          ? envValue
              .split(",")
              .map((s) => s.trim())
              .filter(Boolean)
          : envValue;
      sources[name] = "env";
    } else if (name in fromFile) {
      raw[name] = fromFile[name];
      sources[name] = "file";
    } else {
      sources[name] = "default";
    }
  }
  raw.data_dir ??= defaultDataDir({ cwd, compiled: !!opts.compiled, platform });

  // Value.Convert truncates integers ("1.5" → 1, 2.5 → 2, "1e3" → 1, "true" → 1) and converts in
  // place: integers are parsed strictly here, the rest is converted on a copy so `raw` stays as written.
  const toConvert: Record<string, unknown> = { ...raw };
  const integers: Record<string, unknown> = {};
  for (const name of INTEGER_SETTINGS) {
    if (!(name in raw)) continue;
    integers[name] = strictInteger(raw[name]);
    delete toConvert[name];
  }
  const settings = Value.Default(settingsSchema, {
    ...(Value.Convert(settingsSchema, toConvert) as object),
    ...integers,
  }) as Settings;
  const firstError = Value.Errors(settingsSchema, settings).First();
  if (firstError) {
    const name = firstError.path.split("/")[1] as SettingName;
    const meta = settingMeta(name);
    const got = raw[name];
    // A secret that is wrong is still a secret: the error goes to the journal.
    const shown = meta.secret
      ? `a value of ${String(got).length} characters (not shown: it is a secret)`
      : JSON.stringify(got);
    fail(`${describeSource(name, sources[name], file)}: expected ${meta.hint}, got ${shown}`);
  }
  if ((settings.tls_cert === undefined) !== (settings.tls_key === undefined)) {
    const [set, missing] =
      settings.tls_cert === undefined ? (["tls_key", "tls_cert"] as const) : (["tls_cert", "tls_key"] as const);
    fail(
      `${describeSource(set, sources[set], file)}: set without ${missing} (${settingMeta(missing).env}); set both or neither`,
    );
  }

  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(cwd, p));
  const dataDir = abs(settings.data_dir);
  settings.data_dir = dataDir;
  const ms = (name: SettingName): number => parseDuration(settings[name] as string)!;

  return Object.freeze({
    dataDir,
    http: parseListen(settings.http_listen)!,
    smtp: parseListen(settings.smtp_listen)!,
    mailDomain: settings.mail_domain.toLowerCase(),
    tls: settings.tls_cert && settings.tls_key ? { cert: abs(settings.tls_cert), key: abs(settings.tls_key) } : null,
    masterKeyFile: settings.master_key_file ? abs(settings.master_key_file) : join(dataDir, "master.key"),
    auditCheckpoint: Object.freeze({
      everyEntries: settings.audit_checkpoint_entries,
      everyMs: ms("audit_checkpoint_interval"),
    }),
    bootstrapToken: settings.bootstrap_token ?? null,
    databaseUrl: settings.database_url ?? null,
    consoleSession: Object.freeze({ idleMs: ms("console_session_idle"), maxMs: ms("console_session_max") }),
    dnsServers: settings.dns_servers ?? null,
    dnsTimeoutMs: ms("dns_timeout"),
    smtpLimits: Object.freeze({
      maxMessageBytes: settings.smtp_max_message_size,
      maxRecipients: settings.smtp_max_recipients,
      maxConnections: settings.smtp_max_connections,
      maxConnectionsPerIp: settings.smtp_max_connections_per_ip,
      idleTimeoutMs: ms("smtp_idle_timeout"),
      greetingTimeoutMs: ms("smtp_greeting_timeout"),
      dataTimeoutMs: ms("smtp_data_timeout"),
      maxCommands: settings.smtp_max_commands,
      shedThreshold: settings.smtp_shed_threshold,
      greetingDelayMs: ms("smtp_greeting_delay"),
      ratePerIp: settings.smtp_rate_per_ip,
      ratePerTenant: settings.smtp_rate_per_tenant,
    }),
    spoolRetentionMs: ms("spool_retention"),
    ingressRatePerBinding: settings.ingress_rate_per_binding,
    ingressAuthFailuresPerAddress: settings.ingress_auth_failures_per_address,
    ingressQueueHighWater: settings.ingress_queue_high_water,
    logLevel: settings.log_level,
    shutdownTimeoutMs: ms("shutdown_timeout"),
    commitWindowMs: ms("commit_window"),
    commitMaxBatch: settings.commit_max_batch,
    workerConcurrency: settings.worker_concurrency,
    visibilityTimeoutMs: ms("queue_visibility_timeout"),
    retentionMs: ms("queue_retention"),
    retention: Object.freeze({
      eventsMs: ms("event_retention"),
      contentMs: ms("content_retention"),
      attemptsMs: ms("attempt_retention"),
      auditMs: ms("audit_retention"),
    }),
    disk: Object.freeze({
      warnFree: parseFreeSpace(settings.disk_warn_free),
      failFree: parseFreeSpace(settings.disk_fail_free),
    }),
    inboxWindowMs: ms("inbox_window"),
    backup: Object.freeze({
      schedule: settings.backup_schedule,
      dir: settings.backup_dir ? abs(settings.backup_dir) : join(dataDir, "backups"),
      keep: settings.backup_keep,
      maxBytesPerSecond: settings.backup_max_rate * 2 ** 20,
    }),
    agents: Object.freeze({
      minIdle: settings.agents_min_idle,
      maxRuntimes: settings.agents_max_runtimes,
      onEmpty: settings.agents_on_empty,
      retryAfterMs: ms("agents_retry_after"),
      tickMs: ms("agents_tick_interval"),
      stuckTimeoutMs: ms("agents_stuck_timeout"),
      helloTimeoutMs: ms("agents_hello_timeout"),
      memoryBytes: settings.agents_memory_limit,
    }),
    settings: Object.freeze(settings),
    sources: Object.freeze(sources),
    file,
  });
}
