import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CREDENTIAL_NAME,
  generateMasterKey,
  loadMasterKey,
  masterKeySource,
  openSecret,
  rewrap,
  type SealedSecret,
  sealSecret,
} from "./crypto.ts";

const scope = { tenant: "beta", name: "crm-signing", version: 1 };
const VALUE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Flip one bit of one byte of a buffer (a copy). */
const flip = (b: Buffer, at: number) => {
  const c = Buffer.from(b);
  c[at] = c[at]! ^ 1;
  return c;
};

describe("envelope encryption", () => {
  test("a sealed secret opens to its value, and holds no plaintext", () => {
    const master = generateMasterKey();
    const sealed = sealSecret(master, scope, VALUE);
    expect(openSecret(master, scope, sealed)).toBe(VALUE);
    expect(sealed.sealedValue.includes(Buffer.from(VALUE))).toBe(false);
    expect(sealed.wrappedKey.length).toBe(12 + 16 + 32);
  });

  test("each version has its own data key: the same value seals differently every time", () => {
    const master = generateMasterKey();
    const a = sealSecret(master, scope, VALUE);
    const b = sealSecret(master, scope, VALUE);
    expect(a.wrappedKey.equals(b.wrappedKey)).toBe(false);
    expect(a.sealedValue.equals(b.sealedValue)).toBe(false);
  });

  test("a row moved to another tenant, name or version does not open", () => {
    const master = generateMasterKey();
    const sealed = sealSecret(master, scope, VALUE);
    for (const other of [
      { ...scope, tenant: "alpha" },
      { ...scope, name: "github" },
      { ...scope, version: 2 },
    ]) {
      expect(() => openSecret(master, other, sealed)).toThrow("integrity");
    }
  });

  test("any single-bit change of any stored byte is detected", () => {
    const master = generateMasterKey();
    const sealed = sealSecret(master, scope, VALUE);
    for (const field of ["wrappedKey", "sealedValue"] as const) {
      for (let at = 0; at < sealed[field].length; at++) {
        const tampered: SealedSecret = { ...sealed, [field]: flip(sealed[field], at) };
        expect(() => openSecret(master, scope, tampered), `${field}[${at}]`).toThrow();
      }
    }
  });

  test("another master key does not open it", () => {
    const sealed = sealSecret(generateMasterKey(), scope, VALUE);
    const other = generateMasterKey();
    expect(() => openSecret(other, scope, sealed)).toThrow("another master key");
    expect(() => openSecret(other, scope, { ...sealed, masterKeyId: other.id })).toThrow("integrity");
  });

  test("master-key rotation re-wraps the data key; the sealed value stays byte for byte", () => {
    const oldKey = generateMasterKey();
    const newKey = generateMasterKey();
    const sealed = sealSecret(oldKey, scope, VALUE);
    const moved = rewrap(oldKey, newKey, scope, sealed);
    expect(moved.sealedValue.equals(sealed.sealedValue)).toBe(true);
    expect(moved.masterKeyId).toBe(newKey.id);
    expect(openSecret(newKey, scope, moved)).toBe(VALUE);
    expect(() => openSecret(oldKey, scope, moved)).toThrow();
  });
});

describe("the master key file", () => {
  const file = (content: string, mode = 0o600) => {
    const dir = mkdtempSync(join(tmpdir(), "agentowl-vault-"));
    dirs.push(dir);
    const path = join(dir, "master.key");
    writeFileSync(path, content);
    chmodSync(path, mode);
    return path;
  };

  test("32 random bytes in base64, mode 0600, as agentowl init writes it", () => {
    const key = generateMasterKey();
    const loaded = loadMasterKey(file(`${key.key.toString("base64")}\n`));
    expect(loaded.id).toBe(key.id);
    expect(loaded.key.equals(key.key)).toBe(true);
  });

  test("a file others can read, a short key, garbage or a missing file is refused with one clear line", () => {
    const good = generateMasterKey().key.toString("base64");
    expect(() => loadMasterKey(file(good, 0o644))).toThrow("readable by others");
    expect(() => loadMasterKey(file(Buffer.alloc(16).toString("base64")))).toThrow("32 bytes in base64");
    expect(() => loadMasterKey(file("not base64 at all!"))).toThrow("32 bytes in base64");
    expect(() => loadMasterKey("/nonexistent/master.key")).toThrow("cannot read master key file");
  });
});

describe("the master key from a systemd credential", () => {
  test("is used when the service was given one, else the configured file", () => {
    const dir = mkdtempSync(join(tmpdir(), "agentowl-cred-"));
    dirs.push(dir);
    expect(masterKeySource("/var/lib/agentowl/master.key", {})).toEqual({
      path: "/var/lib/agentowl/master.key",
      credential: false,
    });
    expect(masterKeySource("/var/lib/agentowl/master.key", { CREDENTIALS_DIRECTORY: dir })).toEqual({
      path: "/var/lib/agentowl/master.key",
      credential: false,
    });
    const key = generateMasterKey();
    writeFileSync(join(dir, CREDENTIAL_NAME), key.key.toString("base64"), { mode: 0o400 });
    const source = masterKeySource("/var/lib/agentowl/master.key", { CREDENTIALS_DIRECTORY: dir });
    expect(source).toEqual({ path: join(dir, CREDENTIAL_NAME), credential: true });
    expect(loadMasterKey(source.path).id).toBe(key.id);
  });
});
