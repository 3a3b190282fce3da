import { join } from "node:path";
import type { Logger } from "../core/log.ts";
import type { AnchorState, AuditLog } from "../store/index.ts";
import type { MasterKey } from "../vault/crypto.ts";
import { auditKeyPath, loadChainKeys } from "./keys.ts";

/** The key files beside the master key file (wherever it is kept): made private at start. */
export const keyFiles = (masterKeyFile: string): string[] => [
  masterKeyFile,
  `${masterKeyFile}.next`,
  `${masterKeyFile}.previous`,
  auditKeyPath(masterKeyFile),
];

/** Where the signed checkpoints of the audit chain are kept. */
export const checkpointFile = (dataDir: string) => join(dataDir, "audit", "checkpoints.jsonl");

/**
 * Key the audit chain and anchor it (`agentowl serve` and `agentowl init`, before their first
 * audited write). Every checkpoint is also logged, one info line with the count and the head
 * hash, so a copy lives wherever the logs go, outside the data dir.
 */
export function anchorAuditLog(
  audit: AuditLog,
  opts: {
    dataDir: string;
    masterKeyFile: string;
    master: MasterKey;
    credential: boolean;
    everyEntries: number;
    everyMs: number;
    log: Logger;
  },
): AnchorState {
  const { log } = opts;
  const { keys, created } = loadChainKeys(opts);
  if (created) log.info("audit key created", { file: created });
  const state = audit.anchor({
    keys,
    file: checkpointFile(opts.dataDir),
    everyEntries: opts.everyEntries,
    everyMs: opts.everyMs,
    onCheckpoint: (cp) => log.info("audit checkpoint", { entries: cp.seq, head: cp.head }),
    onError: (e) => log.error("audit checkpoint not written: the next one covers its entries", { err: e }),
  });
  if (state.kind === "upgraded") {
    log.warn(
      "audit chain keyed from now on: the entries written before (plain SHA-256) are anchored once, where they stand",
      { legacy_entries: state.legacyThrough, head: state.head },
    );
  } else if (state.kind === "restarted") {
    log.error("audit chain not anchored: run 'agentowl audit verify'", { detail: state.problem });
  } else if (state.kind === "continued" && state.problem) {
    log.error("audit log does not match its checkpoints: run 'agentowl audit verify'", { detail: state.problem });
  }
  return state;
}
