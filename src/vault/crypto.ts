import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import { existsSync, readFileSync, renameSync, statSync } from "node:fs";
import { fsyncPath, writeFileDurably } from "../core/durable-file.ts";
import { dirname } from "node:path";
import { AppError } from "../errors/index.ts";

/**
 * The vault's envelope encryption (docs/api.md#vault). Each secret version has its own random data key;
 * the value is sealed with it (AES-256-GCM) and the data key is sealed with the master key. Both
 * seals bind the secret's scope (tenant, name, version) as associated data, so a row copied onto
 * another secret, tenant or version does not open. Rotating the master key re-seals data keys
 * only; the values' ciphertexts never change.
 */

export interface MasterKey {
  /** A short fingerprint (not the key): which master key sealed a data key. */
  id: string;
  key: Buffer;
}

export interface SecretScope {
  tenant: string;
  name: string;
  version: number;
}

/** What is stored for one secret version: no plaintext, no unwrapped key. */
export interface SealedSecret {
  masterKeyId: string;
  /** The data key, sealed with the master key: iv (12) ‖ tag (16) ‖ ciphertext (32). */
  wrappedKey: Buffer;
  /** The value, sealed with the data key: iv (12) ‖ tag (16) ‖ ciphertext. */
  sealedValue: Buffer;
}

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

const valueAad = (s: SecretScope) => Buffer.from(`agentowl/v1/value/${s.tenant}/${s.name}#${s.version}`);
const keyAad = (s: SecretScope) => Buffer.from(`agentowl/v1/data-key/${s.tenant}/${s.name}#${s.version}`);

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

function open(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new AppError("internal", "sealed data is truncated");
  const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, IV_BYTES));
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch (e) {
    // GCM authentication failed: wrong key, wrong scope, or tampered bytes. Never say which.
    throw new AppError("internal", "a vault secret failed its integrity check", { cause: e });
  }
}

export function masterKeyFrom(key: Buffer): MasterKey {
  if (key.length !== KEY_BYTES)
    throw new AppError("config_invalid", `a master key is ${KEY_BYTES} bytes, not ${key.length}`);
  return { id: createHash("sha256").update("agentowl/master-key-id").update(key).digest("hex").slice(0, 16), key };
}

/**
 * A key for another purpose, derived from a master key with HKDF-SHA256 (RFC 5869) and a purpose
 * label: knowing the derived key tells nothing of the master key or of keys for other labels.
 */
export function deriveKey(master: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync("sha256", master, Buffer.alloc(0), Buffer.from(label), KEY_BYTES));
}

export function generateMasterKey(): MasterKey {
  return masterKeyFrom(randomBytes(KEY_BYTES));
}

/**
 * Read the master key file written by `agentowl init`: 32 random bytes in base64, mode 0600.
 * A key file that others can read is refused: it would make every secret readable to them.
 */
export function loadMasterKey(path: string): MasterKey {
  let text: string;
  try {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077)
      throw new AppError(
        "config_invalid",
        `master key file ${path} is readable by others (mode ${mode.toString(8)}): chmod 600 it`,
      );
    text = readFileSync(path, "utf8");
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw new AppError(
      "config_invalid",
      `cannot read master key file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)} (run 'agentowl init')`,
      { cause: e },
    );
  }
  const key = Buffer.from(text.trim(), "base64");
  if (key.length !== KEY_BYTES || key.toString("base64") !== text.trim()) {
    throw new AppError("config_invalid", `master key file ${path} must hold ${KEY_BYTES} bytes in base64`);
  }
  return masterKeyFrom(key);
}

/** Create the master key file (32 random bytes, base64, 0600) unless it exists; then load it. */
export function ensureMasterKey(path: string): { key: MasterKey; created: boolean } {
  if (existsSync(path)) return { key: loadMasterKey(path), created: false };
  writeFileDurably(path, `${randomBytes(KEY_BYTES).toString("base64")}\n`, { mode: 0o600, exclusive: true });
  return { key: loadMasterKey(path), created: true };
}

/**
 * Every master key that may have sealed a stored data key, and the one new secrets are sealed
 * with. Normally one key; during a master-key rotation two (`master.key` and `master.key.next`),
 * and after one the previous key stays loadable (`master.key.previous`) until the next.
 */
export interface Keyring {
  sealing: MasterKey;
  byId: ReadonlyMap<string, MasterKey>;
  /** A rotation was interrupted (`.next` exists): the vault resumes it at start. */
  rotating: boolean;
}

export const keyringOf = (key: MasterKey): Keyring => ({
  sealing: key,
  byId: new Map([[key.id, key]]),
  rotating: false,
});

/** Load the master key file (creating it on first start) with its `.next` and `.previous` siblings. */
export function loadKeyring(path: string): { ring: Keyring; created: boolean } {
  // A crash between promoteNextKey's two renames leaves no master.key: finish the promotion
  // rather than create a new key.
  if (!existsSync(path) && existsSync(`${path}.next`) && existsSync(`${path}.previous`))
    renameSync(`${path}.next`, path);
  const { key: current, created } = ensureMasterKey(path);
  const next = existsSync(`${path}.next`) ? loadMasterKey(`${path}.next`) : null;
  const previous = existsSync(`${path}.previous`) ? loadMasterKey(`${path}.previous`) : null;
  const byId = new Map<string, MasterKey>();
  for (const k of [current, next, previous]) if (k) byId.set(k.id, k);
  return { ring: { sealing: next ?? current, byId, rotating: next !== null }, created };
}

/** Write a key file durably: a temp file, fsynced, renamed into place, its directory fsynced. */
export function writeKeyFile(path: string, key: MasterKey): void {
  writeFileDurably(path, `${key.key.toString("base64")}\n`, { mode: 0o600 });
}

/** Make `.next` the master key: the current one becomes `.previous`. Both renames are durable. */
export function promoteNextKey(path: string): void {
  renameSync(path, `${path}.previous`);
  renameSync(`${path}.next`, path);
  fsyncPath(dirname(path));
}

/** The systemd credential name under which the unit may pass the master key (LoadCredential=). */
export const CREDENTIAL_NAME = "agentowl-master-key";

/**
 * Where the master key comes from: a systemd credential when the service was given one
 * ($CREDENTIALS_DIRECTORY/agentowl-master-key, Linux, optional), else the configured file.
 * A credential is read-only: the key is rotated where it is kept, not by `rotate-master`.
 */
export function masterKeySource(
  configured: string,
  env: Record<string, string | undefined> = process.env,
): { path: string; credential: boolean } {
  const dir = env.CREDENTIALS_DIRECTORY;
  const credential = dir ? `${dir}/${CREDENTIAL_NAME}` : null;
  return credential && existsSync(credential)
    ? { path: credential, credential: true }
    : { path: configured, credential: false };
}

/** Seal a new secret version under its own fresh data key. */
export function sealSecret(master: MasterKey, scope: SecretScope, value: string): SealedSecret {
  const dataKey = randomBytes(KEY_BYTES);
  try {
    return {
      masterKeyId: master.id,
      wrappedKey: seal(master.key, dataKey, keyAad(scope)),
      sealedValue: seal(dataKey, Buffer.from(value, "utf8"), valueAad(scope)),
    };
  } finally {
    dataKey.fill(0);
  }
}

/** The value of a sealed secret; fails (without saying why) on any wrong key, scope or byte. */
export function openSecret(master: MasterKey, scope: SecretScope, sealed: SealedSecret): string {
  if (sealed.masterKeyId !== master.id) throw new AppError("internal", "this secret is sealed with another master key");
  const dataKey = open(master.key, sealed.wrappedKey, keyAad(scope));
  try {
    return open(dataKey, sealed.sealedValue, valueAad(scope)).toString("utf8");
  } finally {
    dataKey.fill(0);
  }
}

/** Master-key rotation: the same data key, sealed with the new master key; the value is untouched. */
export function rewrap(from: MasterKey, to: MasterKey, scope: SecretScope, sealed: SealedSecret): SealedSecret {
  if (sealed.masterKeyId !== from.id) throw new AppError("internal", "this secret is sealed with another master key");
  const dataKey = open(from.key, sealed.wrappedKey, keyAad(scope));
  try {
    return { masterKeyId: to.id, wrappedKey: seal(to.key, dataKey, keyAad(scope)), sealedValue: sealed.sealedValue };
  } finally {
    dataKey.fill(0);
  }
}
