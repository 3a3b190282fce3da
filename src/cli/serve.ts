import { loadConfig } from "../config/index.ts";
import { createLogger, LogTap, Redactor } from "../core/log.ts";
import { isCompiledBinary } from "../version.ts";
import type { Command } from "./command.ts";
import { EXIT } from "./exit-codes.ts";

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
    const { startApp } = await import("../app.ts");
    const app = await startApp({ config, log, redactor, logTap });
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
