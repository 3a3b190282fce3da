import type { Clock } from "../core/clock.ts";
import type { Logger, Redactor } from "../core/log.ts";
import type { Config } from "../config/index.ts";
import { seedBootstrapToken } from "../api/auth.ts";
import { anchorAuditLog } from "../audit/anchor.ts";
import type { Storage } from "../store/index.ts";
import { keyringOf, loadKeyring, loadMasterKey, masterKeySource } from "../vault/crypto.ts";
import { Vault } from "../vault/vault.ts";

/**
 * The master key (created by `agentowl init`, or by a first `serve` without init), the audit
 * chain keyed and anchored before the first audited write (the bootstrap token's), and the vault;
 * a master-key rotation an earlier process did not finish resumes in the background.
 */
export async function openVault(deps: {
  config: Config;
  log: Logger;
  storage: Storage;
  redactor: Redactor;
  clock: Clock;
}): Promise<Vault> {
  const { config, log, storage } = deps;
  const source = masterKeySource(config.masterKeyFile);
  const { ring, created } = source.credential
    ? { ring: keyringOf(loadMasterKey(source.path)), created: false }
    : loadKeyring(source.path);
  if (created) log.info("vault master key created", { file: source.path });
  if (source.credential) log.info("vault master key from a systemd credential", { credential: source.path });
  anchorAuditLog(storage.audit, {
    dataDir: config.dataDir,
    masterKeyFile: config.masterKeyFile,
    master: ring.sealing,
    credential: source.credential,
    ...config.auditCheckpoint,
    log,
  });
  await seedBootstrapToken(storage.tokens, config.bootstrapToken, deps.clock, log);
  const vault = new Vault(storage, ring, deps.redactor, deps.clock, source.credential ? null : source.path);
  if (ring.rotating) {
    log.warn("a master-key rotation was interrupted: resuming it");
    void vault.rotateMaster({ actor: "system" }).then(
      (r) => log.info("master-key rotation finished", { rewrapped: r.rewrapped }),
      (e) => log.error("master-key rotation failed", { err: e }),
    );
  }
  return vault;
}
