import { existsSync, readFileSync } from "node:fs";
import { writeFileDurably } from "../core/durable-file.ts";
import { join } from "node:path";
import { loadConfig, renderConfigTemplate } from "../config/index.ts";
import { generateToken, seedBootstrapToken, sha256Hex } from "../api/auth.ts";
import { systemClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import { openStorage, prepareDataDir } from "../store/index.ts";
import { fingerprintOf } from "../server/tls.ts";
import { ensureMasterKey, loadMasterKey, masterKeySource } from "../vault/crypto.ts";
import { anchorAuditLog, checkpointFile, keyFiles } from "../audit/anchor.ts";
import type { TokenStore } from "../store/index.ts";
import { generatePassword, Users } from "../users/index.ts";
import { isCompiledBinary } from "../version.ts";
import type { Command } from "./command.ts";
import { EXIT } from "./exit-codes.ts";

/**
 * The first admin API token, when no admin token exists: created, stored hashed, and returned
 * this once for the caller to show. Null when an admin exists already.
 */
export async function createFirstAdmin(tokens: TokenStore, createdBy: string): Promise<string | null> {
  if ((await tokens.countActiveAdmins(systemClock.now())) > 0) return null;
  const token = generateToken();
  await tokens.create({ name: "initial-admin", hash: sha256Hex(token), scopes: ["admin"], expiresAt: null, createdBy });
  return token;
}

/** The console user `agentowl init` creates when there is none. */
export const FIRST_USER = "admin";

const ANCHOR_SAID = {
  new: "keyed, first checkpoint written",
  continued: "keyed, checkpoints kept",
  upgraded: "keyed from now on; the entries written before are anchored by a checkpoint",
  restarted: "keyed; checkpoints started again",
} as const;

export const initCommand: Command = {
  name: ["init"],
  summary: "create the data dir, the vault master key, a settings file, and the database",
  help: `Usage: agentowl init

Prepares the data dir (AGENTOWL_DATA_DIR) so that 'agentowl serve' can start:
  - the data dir and its spool/, blobs/ and audit/ folders, mode 0700; an existing data dir,
    its database (with its WAL/SHM files), key files, spool and blobs files are made private
    (0700/0600) when others could read them, and the output says which;
  - the vault master key (master_key_file, 32 random bytes, base64, mode 0600), never overwritten;
  - the audit chain's key (audit.key beside the master key, derived from it once, 0600) and its
    first signed checkpoint (audit/checkpoints.jsonl);
  - unless tls_cert/tls_key are set, a self-signed certificate for STARTTLS and HTTPS in tls/
    (key 0600); its SHA-256 fingerprint is printed, to compare at 'agentowl login';
  - agentowl.toml with every setting commented out at its default, if there is none;
  - the database, migrated to this binary's schema;
  - the first admin API token when none exists: AGENTOWL_BOOTSTRAP_TOKEN if set, else a new
    token printed once (only its hash is stored);
  - the first console user when there is none: 'admin', with a generated 20-character password
    printed once (only its argon2id hash is stored; change it with 'agentowl users passwd admin').
Safe to run again: it only creates what is missing.

Exit codes: 0 done, 1 failed, 4 database newer than this binary, 78 bad settings.`,
  async run(_args, io) {
    const config = loadConfig({ env: io.env, cwd: io.cwd, compiled: isCompiledBinary() });
    const tightened = prepareDataDir(config.dataDir, { deep: true, files: keyFiles(config.masterKeyFile) });
    const said: string[] = [`data dir ${config.dataDir} (0700)`];
    if (tightened.length) said.push(`made private (others could read them): ${tightened.join(", ")}`);

    const { key, created } = ensureMasterKey(config.masterKeyFile);
    said.push(`master key ${config.masterKeyFile} (${created ? "created, 0600" : "kept"})`);

    let certPath: string;
    if (config.tls) said.push(`TLS certificate ${(certPath = config.tls.cert)} (configured)`);
    else {
      const { ensureSelfSigned, tlsDir } = await import("../ingress/smtp/tls.ts");
      certPath = join(tlsDir(config.dataDir), "cert.pem");
      said.push(
        `TLS certificate ${certPath} (${(await ensureSelfSigned(config.dataDir, config.mailDomain)) ? "created, self-signed" : "kept"})`,
      );
    }
    let fingerprint: string | null = null;
    try {
      fingerprint = fingerprintOf(readFileSync(certPath, "utf8"));
    } catch (e) {
      io.err(
        `warning: cannot read the TLS ` +
          `certificate ${certPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} ` +
          `('agentowl serve' will refuse to start)\n`,
      );
    }

    const toml = join(config.dataDir, "agentowl.toml");
    if (!config.file && !existsSync(toml)) {
      writeFileDurably(toml, renderConfigTemplate(), { mode: 0o600, exclusive: true });
      said.push(`settings ${toml} (created)`);
    }

    const storage = openStorage({ dir: config.dataDir });
    let firstToken: string | null = null;
    let firstPassword: string | null = null;
    try {
      // The audit chain is keyed and anchored before the first admin token's entry is written.
      const source = masterKeySource(config.masterKeyFile, io.env);
      const audit = anchorAuditLog(storage.audit, {
        dataDir: config.dataDir,
        masterKeyFile: config.masterKeyFile,
        master: source.credential ? loadMasterKey(source.path) : key,
        credential: source.credential,
        ...config.auditCheckpoint,
        log: silentLogger,
      });
      said.push(`audit chain ${checkpointFile(config.dataDir)} (${ANCHOR_SAID[audit.kind]})`);
      if (audit.kind === "restarted")
        said.push(`audit chain NOT anchored: ${audit.problem}; run 'agentowl audit verify'`);
      const { applied, version } = storage.migration;
      said.push(
        `database schema version ${version}${applied.length ? ` (applied ${applied.join(", ")})` : " (up to date)"}`,
      );
      // The first admin: AGENTOWL_BOOTSTRAP_TOKEN when set, else a new token shown this once.
      if (await seedBootstrapToken(storage.tokens, config.bootstrapToken, systemClock, silentLogger)) {
        said.push("admin token: AGENTOWL_BOOTSTRAP_TOKEN (stored hashed)");
      } else {
        firstToken = await createFirstAdmin(storage.tokens, "agentowl init");
      }
      // The console's first user; the console also offers to create one with the bootstrap token.
      const users = new Users({ storage });
      if ((await users.count()) === 0) {
        const password = generatePassword(20);
        if (await users.createInitialAdmin(FIRST_USER, password, "agentowl init")) {
          firstPassword = password;
          said.push(`console user ${FIRST_USER} (created; its password is below, shown once)`);
        }
      }
    } finally {
      await storage.close();
    }

    io.out(said.map((s) => `ok  ${s}`).join("\n") + "\n");
    // What 'agentowl login' shows for the HTTPS listener: the person compares the two.
    if (fingerprint) io.out(`\nHTTPS certificate fingerprint (compare it at 'agentowl login'):\n\n  ${fingerprint}\n`);
    if (firstToken) {
      io.out(
        `\nFirst admin API token (shown once; store it now, only its hash is kept):\n\n  ${firstToken}\n\nUse it as AGENTOWL_TOKEN, or: agentowl login\n`,
      );
    }
    if (firstPassword) {
      io.out(
        `\nConsole sign-in (shown once; store it now, only its hash is kept):\n\n  user      ${FIRST_USER}\n  password  ${firstPassword}\n\nChange it with: agentowl users passwd ${FIRST_USER}\n`,
      );
    }
    return EXIT.ok;
  },
};
