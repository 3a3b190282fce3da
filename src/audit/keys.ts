import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { AppError } from "../errors/index.ts";
import { deriveKey, type MasterKey, masterKeyFrom, writeKeyFile } from "../vault/crypto.ts";
import type { ChainKeys } from "../store/index.ts";

/**
 * The audit chain's keys. Their root is derived from the vault's master key (HKDF, label
 * "agentowl audit chain v1") once, when the chain is first keyed, and kept in `audit.key` beside
 * the master key file (0600): a master-key rotation replaces the master key, and a chain keyed
 * with it would stop verifying once the previous key is gone, so the root must not follow it.
 * When the master key comes from a systemd credential (which `rotate-master` never changes) the
 * root is derived from it at every start and nothing is written.
 */

export const AUDIT_KEY_LABEL = "agentowl audit chain v1";
export const AUDIT_KEY_FILE = "audit.key";
const KEY_BYTES = 32;

/** `audit.key`, beside the master key file. */
export const auditKeyPath = (masterKeyFile: string) => join(dirname(masterKeyFile), AUDIT_KEY_FILE);

/** The entry key and the checkpoint key, each derived from the root with its own label. */
export function chainKeysFrom(root: Buffer): ChainKeys {
  return {
    entry: deriveKey(root, `${AUDIT_KEY_LABEL} entries`),
    checkpoint: deriveKey(root, `${AUDIT_KEY_LABEL} checkpoints`),
  };
}

function readRoot(path: string): Buffer {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077)
    throw new AppError(
      "config_invalid",
      `audit key file ${path} is readable by others (mode ${mode.toString(8)}): chmod 600 it`,
    );
  const text = readFileSync(path, "utf8").trim();
  const key = Buffer.from(text, "base64");
  if (key.length !== KEY_BYTES || key.toString("base64") !== text)
    throw new AppError("config_invalid", `audit key file ${path} must hold ${KEY_BYTES} bytes in base64`);
  return key;
}

/**
 * The chain's keys for an appliance whose master key is `master`, read from (or, the first time,
 * derived into) `audit.key` beside `masterKeyFile`; from the credential itself when `credential`.
 */
export function loadChainKeys(opts: { masterKeyFile: string; master: MasterKey; credential: boolean }): {
  keys: ChainKeys;
  created: string | null;
} {
  if (opts.credential) return { keys: chainKeysFrom(deriveKey(opts.master.key, AUDIT_KEY_LABEL)), created: null };
  const path = auditKeyPath(opts.masterKeyFile);
  if (existsSync(path)) return { keys: chainKeysFrom(readRoot(path)), created: null };
  // Written durably (temp file, fsync, rename, directory fsync) before the first keyed entry.
  writeKeyFile(path, masterKeyFrom(deriveKey(opts.master.key, AUDIT_KEY_LABEL)));
  return { keys: chainKeysFrom(readRoot(path)), created: path };
}
