import type { Clock, Random } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Config } from "../config/index.ts";
import { keyFiles } from "../audit/anchor.ts";
import { lockDataDir, openStorage as openDriver, prepareDataDir, type Storage } from "../store/index.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";

/** The data dir made private and locked (one appliance per data dir), the database opened and migrated. */
export function openStorage(
  deps: { config: Config; log: Logger; metrics: Metrics; clock?: Clock; random?: Random },
  stack: StopStack<Shutdown>,
): Storage {
  const { config, log, metrics } = deps;
  const tightened = prepareDataDir(config.dataDir, { files: keyFiles(config.masterKeyFile) });
  if (tightened.length) log.warn("made files in the data dir private: others could read them", { paths: tightened });
  stack.add("data-dir lock", lockDataDir(config.dataDir), (l) => l.release());
  const storage = stack.add(
    "storage",
    openDriver({
      dir: config.dataDir,
      databaseUrl: config.databaseUrl,
      windowMs: config.commitWindowMs,
      maxBatch: config.commitMaxBatch,
      clock: deps.clock,
      random: deps.random,
      onCommit: metrics.observeCommit,
    }),
    (s) => s.close(),
  );
  if (storage.migration.applied.length)
    log.info("database migrated", { applied: storage.migration.applied, version: storage.migration.version });
  metrics.watchQueue(storage.queue);
  return storage;
}
