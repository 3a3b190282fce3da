import { systemClock } from "../core/clock.ts";
import { loadConfig } from "../config/index.ts";
import { createLogger, type Logger, LogTap, Redactor } from "../core/log.ts";
import { isCompiledBinary } from "../version.ts";
import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import type { App } from "../app/app.ts";
import type { Command, CommandIO } from "./command.ts";
import { createFirstAdmin, FIRST_USER } from "./init.ts";
import { generatePassword } from "../users/index.ts";
import { EXIT } from "./exit-codes.ts";
import { stepTimer } from "../app/steps.ts";

/** How this process's user runs the CLI: the binary itself, or bun with src/main.ts from here. */
function cliInvocation(io: CommandIO): string {
  if (isCompiledBinary())
    return relative(io.cwd, process.execPath).startsWith("..")
      ? process.execPath
      : `./${relative(io.cwd, process.execPath)}`;
  const main = process.argv[1] ?? "src/main.ts";
  const script = relative(io.cwd, main).startsWith("..") ? main : relative(io.cwd, main);
  // From a clone, the bun that npm ci installed.
  const bun = existsSync(join(io.cwd, "node_modules", ".bin", "bun")) ? "node_modules/.bin/bun" : process.execPath;
  return `${bun} ${script}`;
}

/**
 * The first start on a data dir with no admin token: the person at the terminal gets one, printed
 * once to stderr (never stdout, which carries the JSON log, and never when stderr is not a
 * terminal: then it may be a log file), with the URLs served and the one next command. Without a
 * terminal no token is made, and the log says how to get one.
 */
async function firstStart(app: App, redactor: Redactor, log: Logger, io: CommandIO): Promise<void> {
  if ((await app.storage.tokens.countActiveAdmins(systemClock.now())) > 0) return;
  const cli = cliInvocation(io);
  const served = `agentowl is serving: API, webhooks and /metrics at ${app.url}, SMTP on ${app.smtp.host}:${app.smtp.port}.`;
  if (!io.tty?.stderr) {
    log.warn("no admin API token exists yet", {
      next: `run '${cli} init' (it prints one, once) or start with AGENTOWL_BOOTSTRAP_TOKEN set`,
    });
    return;
  }
  const token = await createFirstAdmin(app.storage.tokens, "agentowl serve (first start)");
  if (!token) return;
  redactor.learn(token);
  const example = existsSync(join(io.cwd, "examples", "agentowl.yaml"))
    ? "examples/agentowl.yaml"
    : "YOUR-FILE.yaml   # desired state: tenants, bindings, endpoints, routes";
  // The console's first user too, when there is none: same terminal, same once.
  const password = generatePassword();
  const user =
    (await app.users.count()) === 0
      ? await app.users.createInitialAdmin(FIRST_USER, password, "agentowl serve (first start)")
      : null;
  if (user) redactor.learn(password);
  const consoleLine = user
    ? `Console at ${app.url.replace("0.0.0.0", "127.0.0.1")}/console: user ${FIRST_USER}, password ${password} ` +
      `(shown this once; change it with '${cli} users passwd ${FIRST_USER}').\n\n`
    : "";
  io.err(
    `\n${served}\n\nFirst admin API token (shown this once; only its hash is kept):\n\n  ${token}\n\n` +
      consoleLine +
      `Next, in another terminal:\n\n  export AGENTOWL_TOKEN=${token} ` +
      `AGENTOWL_URL=${app.url.replace("0.0.0.0", "127.0.0.1")}\n  ${cli} apply -f ${example}\n\n`,
  );
}

export const serveCommand: Command = {
  name: ["serve"],
  summary: "run the appliance: HTTP, SMTP, workers (until SIGTERM/SIGINT)",
  help: `Usage: agentowl serve

Runs the appliance in the foreground on the configured data dir, logging JSON to stdout.
Creates and migrates the data dir when needed. Stops gracefully on SIGTERM or SIGINT: stops
accepting, drains requests and jobs in flight for up to shutdown_timeout, then closes the
database. A second signal exits at once.

Settings: agentowl.toml and AGENTOWL_* variables (see 'agentowl config show').
Exit codes: 0 stopped cleanly, 1 failed or forced stop, 4 data dir in use, 78 bad settings.`,
  async run(_args, io) {
    const config = loadConfig({ env: io.env, cwd: io.cwd, compiled: isCompiledBinary() });
    const redactor = new Redactor();
    redactor.learn(config.bootstrapToken);
    const logTap = new LogTap();
    const log = createLogger({
      level: config.logLevel,
      redactor,
      sink: (line) => {
        process.stdout.write(line + "\n");
        logTap.publish(line);
      },
    });
    // A bug must surface as a log line an operator can read, not as a bare stack trace.
    process.on("unhandledRejection", (reason) => log.error("unhandled rejection", { err: reason }));
    process.on("uncaughtException", (err) => {
      log.error("uncaught exception: exiting", { err, stack: err.stack });
      process.exit(EXIT.failed);
    });
    // Loaded here, not at the top: every other command starts without the whole appliance
    // (mailparser, mailauth, smtp-server, …), which keeps the CLI quick.
    const step = stepTimer(log, 0);
    step("exec to settings");
    const { startApp } = await import("../app/app.ts");
    step("load modules");
    const app = await startApp({ config, log, redactor, logTap });
    await firstStart(app, redactor, log, io);
    // Start-up leaves garbage (settings, migrations' checks, schema compilation, module set-up) that
    // an idle appliance never allocates enough to collect: one full collection a second after
    // ready returns it (idle memory, docs/performance.md#idle-memory; about 10 ms, logged at debug).
    setTimeout(() => {
      const t0 = performance.now();
      Bun.gc(true);
      log.debug("start-up garbage collected", { ms: Math.round(performance.now() - t0) });
    }, 1000).unref();
    // The compiled binary starts with higher JIT thresholds (scripts/build.sh), so that code run
    // once at start-up is not compiled: from here on, what runs often is compiled as usual.
    Bun.unsafe.setJITPolicy?.(1);
    return await new Promise<number>((resolve) => {
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        if (++signals > 1) {
          log.warn("second signal: exiting now", { signal });
          process.exit(EXIT.failed);
        }
        log.info("signal received", { signal });
        app.stop().then(
          ({ forced }) => resolve(forced ? EXIT.failed : EXIT.ok),
          (e) => {
            log.error("shutdown failed", { err: e });
            resolve(EXIT.failed);
          },
        );
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    });
  },
};
