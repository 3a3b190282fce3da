import { chmodSync, copyFileSync, existsSync, readFileSync, renameSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadConfig } from "../config/index.ts";
import { systemClock } from "../core/clock.ts";
import { writeFileDurably } from "../core/durable-file.ts";
import { servesHttps } from "../server/tls.ts";
import { lockDataDir } from "../store/index.ts";
import { isCompiledBinary, VERSION } from "../version.ts";
import { type Command, type CommandIO, choiceOpt, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { restorePreUpgradeBackup, takePreUpgradeBackup, upgradeDir } from "./upgrade-backup.ts";

/** What `agentowl upgrade` left for `agentowl rollback`: `<data dir>/upgrade/last.json`. */
interface UpgradeRecord {
  from: string;
  to: string;
  bin: string;
  prev: string;
  backup: string;
  at: number;
  rolled_back_at?: number;
}

const INIT_SYSTEMS = ["auto", "systemd", "launchd"] as const;
const SYSTEMD_UNIT = "agentowl.service";
const LAUNCHD_LABEL = "system/dev.agentowl.agentowl";
const LAUNCHD_PLIST = "/Library/LaunchDaemons/dev.agentowl.agentowl.plist";

/** The service manager's few verbs, run as commands (a stub on PATH stands in for them in tests). */
interface ServiceManager {
  name: string;
  stop(): void;
  /** False when the manager says the start failed (systemd with Type=notify: it exited before READY=1). */
  start(): boolean;
  active(): boolean;
}

function serviceManager(kind: (typeof INIT_SYSTEMS)[number], io: CommandIO): ServiceManager {
  const run = (cmd: string[], quiet = false): boolean => {
    if (!quiet) io.out(`+ ${cmd.join(" ")}\n`);
    const p = Bun.spawnSync(cmd, { env: io.env as Record<string, string>, stdout: "ignore", stderr: "pipe" });
    if (!quiet && p.exitCode !== 0) io.err(p.stderr.toString());
    return p.exitCode === 0;
  };
  const onPath = (bin: string) => Bun.which(bin, { PATH: io.env.PATH ?? "" }) !== null;
  if (kind === "auto") {
    if (process.platform === "linux" && onPath("systemctl") && existsSync("/run/systemd/system")) kind = "systemd";
    else if (process.platform === "darwin" && onPath("launchctl")) kind = "launchd";
    else
      throw new CommandFailure(
        "no running service manager (systemd or launchd) found: upgrade swaps the binary of the installed service; " +
          "give --init-system, or stop agentowl, replace the binary and start it by hand",
        EXIT.failed,
      );
  }
  if (kind === "systemd")
    return {
      name: "systemd",
      stop: () => void run(["systemctl", "stop", SYSTEMD_UNIT]),
      start: () => run(["systemctl", "start", SYSTEMD_UNIT]),
      active: () => run(["systemctl", "is-active", "--quiet", SYSTEMD_UNIT], true),
    };
  return {
    name: "launchd",
    stop: () => void run(["launchctl", "bootout", LAUNCHD_LABEL]),
    start: () => run(["launchctl", "bootstrap", "system", io.env.AGENTOWL_LAUNCHD_PLIST ?? LAUNCHD_PLIST]),
    active: () => {
      const p = Bun.spawnSync(["launchctl", "print", LAUNCHD_LABEL], { env: io.env as Record<string, string> });
      return p.exitCode === 0 && (p.stdout.toString().includes("state = running") || p.stdout.length === 0);
    },
  };
}

/** The settings the service runs with: the environment, and the installer's settings file under it. */
function serviceEnv(io: CommandIO, envFile: string | undefined): Record<string, string | undefined> {
  const env = { ...io.env };
  const file = envFile ?? "/etc/agentowl/agentowl.env";
  if (!existsSync(file)) {
    if (envFile) throw new UsageError(`--env-file ${envFile} does not exist`);
    return env;
  }
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^\s*(AGENTOWL_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (m && env[m[1]!] === undefined) env[m[1]!] = m[2]!.replace(/^(["'])(.*)\1$/, "$2");
  }
  return env;
}

interface Context {
  io: CommandIO;
  dataDir: string;
  readyUrl: string;
  timeoutMs: number;
  svc: ServiceManager;
}

function context(values: Record<string, unknown>, io: CommandIO): Context {
  const env = serviceEnv(io, stringOpt(values, "env-file"));
  const dataDir = stringOpt(values, "data-dir");
  if (dataDir) env.AGENTOWL_DATA_DIR = resolve(io.cwd, dataDir);
  // The master key is the service's, not this command's: it is not needed to read the settings.
  const config = loadConfig({ env, cwd: io.cwd, compiled: isCompiledBinary() });
  const timeout = stringOpt(values, "ready-timeout") ?? "60";
  if (!/^\d+$/.test(timeout)) throw new UsageError("--ready-timeout takes a number of seconds");
  const { host, port } = config.http;
  const probeHost = host === "0.0.0.0" || host === "::" || host === "" ? "127.0.0.1" : host;
  const scheme = servesHttps(config.settings.http_tls, host) ? "https" : "http";
  return {
    io,
    dataDir: config.dataDir,
    readyUrl: `${scheme}://${probeHost.includes(":") ? `[${probeHost}]` : probeHost}:${port}/readyz`,
    timeoutMs: Number(timeout) * 1000,
    svc: serviceManager(choiceOpt(values, "init-system", INIT_SYSTEMS) ?? "auto", { ...io, env }),
  };
}

/** The installed binary: --bin, else this one when it is a compiled binary. */
function installedBinary(values: Record<string, unknown>, io: CommandIO): string {
  const bin = stringOpt(values, "bin");
  if (bin) return resolve(io.cwd, bin);
  if (isCompiledBinary()) return process.execPath;
  throw new UsageError("--bin PATH: the installed binary to replace (this one runs from source)");
}

/** The data dir is free once the service stopped: nothing else may hold the database while it is copied. */
function ensureStopped(ctx: Context): void {
  try {
    lockDataDir(ctx.dataDir).release();
  } catch {
    throw new CommandFailure(
      `the data dir ${ctx.dataDir} is still in use after stopping the service (another agentowl serve?); nothing was changed`,
      EXIT.conflict,
    );
  }
}

/** Copy a binary into place whole: a temp file, made executable, renamed over. */
function placeBinary(from: string, to: string): void {
  const temp = `${to}.new`;
  copyFileSync(from, temp);
  chmodSync(temp, statSync(from).mode & 0o777 || 0o755);
  renameSync(temp, to);
}

/**
 * Start the service and wait for /readyz 200 within the timeout. Fails early when the service
 * manager says the start failed, or the service is no longer running (it exited).
 */
async function startAndWait(ctx: Context): Promise<string | null> {
  if (!ctx.svc.start()) return `${ctx.svc.name} could not start it`;
  const deadline = performance.now() + ctx.timeoutMs;
  ctx.io.out(`waiting for ${ctx.readyUrl} (up to ${ctx.timeoutMs / 1000}s)\n`);
  while (performance.now() < deadline) {
    try {
      const res = await fetch(ctx.readyUrl, { signal: AbortSignal.timeout(2000), tls: { rejectUnauthorized: false } });
      if (res.status === 200) return null;
    } catch {
      // not listening yet
    }
    if (!ctx.svc.active()) return "it exited";
    await Bun.sleep(200);
  }
  return `it was not ready within ${ctx.timeoutMs / 1000}s`;
}

const recordPath = (dataDir: string) => join(upgradeDir(dataDir), "last.json");

function readRecord(dataDir: string): UpgradeRecord | null {
  try {
    return JSON.parse(readFileSync(recordPath(dataDir), "utf8")) as UpgradeRecord;
  } catch {
    return null;
  }
}

const writeRecord = (dataDir: string, r: UpgradeRecord) =>
  writeFileDurably(recordPath(dataDir), `${JSON.stringify(r, null, 2)}\n`, { mode: 0o600 });

/** Back to the binary and the database from before the upgrade, and serving again. */
async function rollBack(ctx: Context, r: UpgradeRecord): Promise<string | null> {
  ctx.svc.stop();
  ensureStopped(ctx);
  ctx.io.out(`putting back ${r.prev} (agentowl ${r.from}) and the database of ${r.backup}\n`);
  placeBinary(r.prev, r.bin);
  restorePreUpgradeBackup(ctx.dataDir, r.backup);
  writeRecord(ctx.dataDir, { ...r, rolled_back_at: systemClock.now() });
  return startAndWait(ctx);
}

const SERVICE_OPTIONS = {
  bin: { type: "string" },
  "data-dir": { type: "string" },
  "env-file": { type: "string" },
  "init-system": { type: "string" },
  "ready-timeout": { type: "string" },
} as const;

const SERVICE_HELP = `  --bin PATH          the installed binary (default: this one)
  --data-dir DIR      the service's data dir (default: AGENTOWL_DATA_DIR, the settings)
  --env-file FILE     the service's settings file (default /etc/agentowl/agentowl.env, if any)
  --init-system S     systemd or launchd (default: detected)
  --ready-timeout N   seconds to wait for /readyz (default 60)`;

export const upgradeCommand: Command = {
  name: ["upgrade"],
  summary: "replace the installed binary with FILE; roll back by itself if it does not get ready",
  help: `Usage: agentowl upgrade FILE [options]

Upgrades the installed service to the binary FILE: stops the service, copies the database to
<data dir>/upgrade/pre-<version>.db, keeps the installed binary as <bin>.prev, puts FILE in its
place, starts the service (the new binary migrates the database) and waits for /readyz. If the
new binary exits or is not ready in time, the previous binary and the pre-upgrade database are
put back and started again, by themselves. 'agentowl rollback' does the same later, by hand.
Run as the user that may stop the service and write the binary (root).

${SERVICE_HELP}

Exit codes: 0 upgraded and ready, 1 the upgrade failed (rolled back: the output says whether the
previous binary serves again), 2 usage, 4 the data dir stayed in use.`,
  options: SERVICE_OPTIONS,
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const file = positionals[0];
    if (!file) throw new UsageError("name the new binary: agentowl upgrade FILE");
    const next = resolve(io.cwd, file);
    const bin = installedBinary(values, io);
    const probe = Bun.spawnSync([next, "version", "--json"], { stdout: "pipe", stderr: "pipe" });
    let to: string;
    try {
      to = (JSON.parse(probe.stdout.toString()) as { version: string }).version;
    } catch {
      throw new CommandFailure(
        `${next} does not run here ('${next} version --json' failed): is it the right target?`,
        1,
      );
    }
    const ctx = context(values, io);
    io.out(`upgrading ${bin} from agentowl ${VERSION} to ${to} (data dir ${ctx.dataDir})\n`);
    ctx.svc.stop();
    ensureStopped(ctx);
    const backup = takePreUpgradeBackup(ctx.dataDir, to);
    io.out(`ok    pre-upgrade backup ${backup}\n`);
    const record: UpgradeRecord = { from: VERSION, to, bin, prev: `${bin}.prev`, backup, at: systemClock.now() };
    placeBinary(bin, record.prev);
    placeBinary(next, bin);
    writeRecord(ctx.dataDir, record);
    io.out(`ok    ${bin} is agentowl ${to}; the previous one is ${record.prev}\n`);
    const failed = await startAndWait(ctx);
    if (!failed) {
      io.out(`ok    agentowl ${to} is ready: ${ctx.readyUrl} answered 200\n`);
      return EXIT.ok;
    }
    io.err(`agentowl upgrade: the new binary did not get ready (${failed}): rolling back\n`);
    const again = await rollBack(ctx, record);
    if (again)
      throw new CommandFailure(
        `rolled back to agentowl ${VERSION}, but it did not get ready either (${again}): see the service's log`,
        EXIT.failed,
      );
    throw new CommandFailure(
      `upgrade to ${to} failed (${failed}); rolled back: agentowl ${VERSION} serves again with the pre-upgrade database`,
      EXIT.failed,
    );
  },
};

export const rollbackCommand: Command = {
  name: ["rollback"],
  summary: "go back to the binary and the database from before the last upgrade",
  help: `Usage: agentowl rollback [options]

Undoes the last 'agentowl upgrade' (or 'install.sh --upgrade'): stops the service, puts the
previous binary (<bin>.prev) back, restores the database copied before the upgrade, starts the
service and waits for /readyz. What the database received since the upgrade is lost (the raw
mail stays in the spool).

${SERVICE_HELP}

Exit codes: 0 rolled back and ready, 1 failed, 3 no upgrade to roll back, 4 already rolled back,
or the data dir stayed in use.`,
  options: SERVICE_OPTIONS,
  async run({ values }, io) {
    const ctx = context(values, io);
    const record = readRecord(ctx.dataDir);
    if (!record) throw new CommandFailure(`no upgrade to roll back in ${upgradeDir(ctx.dataDir)}`, EXIT.notFound);
    if (record.rolled_back_at)
      throw new CommandFailure(
        `the upgrade to ${record.to} was rolled back already (${new Date(record.rolled_back_at).toISOString()})`,
        EXIT.conflict,
      );
    if (!existsSync(record.prev))
      throw new CommandFailure(`the previous binary ${record.prev} is missing`, EXIT.failed);
    const failed = await rollBack(ctx, record);
    if (failed) throw new CommandFailure(`rolled back to ${record.from}, but ${failed}: see the service's log`, 1);
    io.out(`ok    agentowl ${record.from} is ready again: ${ctx.readyUrl} answered 200\n`);
    return EXIT.ok;
  },
};
