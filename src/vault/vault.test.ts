import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tempStorages } from "../../test/helpers/storage.ts";
import { ManualClock } from "../core/clock.ts";
import { createLogger, Redactor } from "../core/log.ts";
import { generateMasterKey, keyringOf, loadKeyring, loadMasterKey, writeKeyFile } from "./crypto.ts";
import { isSigningSecret, LEASE_TTL_MS, Vault } from "./vault.ts";

const newStorage = tempStorages();

function setup() {
  // One clock for the storage (which stamps writes) and the vault (which checks expiry).
  const clock = new ManualClock(Date.now());
  const storage = newStorage({ clock });
  const redactor = new Redactor();
  const vault = new Vault(storage, keyringOf(generateMasterKey()), redactor, clock);
  return { storage, clock, redactor, vault };
}

const V1 = "whsec_first-value-0123456789abcdef";
const V2 = "whsec_second-value-fedcba9876543210";

describe("the vault", () => {
  test("set, then lease: the value comes back once, through the lease only", async () => {
    const { vault } = setup();
    const info = await vault.set("beta/crm-signing", V1, { actor: "token:tok_a" });
    expect(info).toMatchObject({ tenant: "beta", name: "crm-signing", version: 1 });
    expect(JSON.stringify(info)).not.toContain(V1);
    expect(JSON.stringify(await vault.list())).not.toContain(V1);
    const lease = await vault.lease("beta/crm-signing", { forTenant: "beta", consumer: "delivery:dlv_1" });
    expect(vault.redeem(lease.id)).toEqual([V1]);
    expect(() => vault.redeem(lease.id)).toThrow("used already");
  });

  test("a secret is set once; after that it is rotated", async () => {
    const { vault } = setup();
    await vault.set("beta/github", V1, { actor: "a" });
    await expect(vault.set("beta/github", V2, { actor: "a" })).rejects.toThrow("rotate it");
    await expect(vault.rotate("beta/missing", V2, { actor: "a" })).rejects.toThrow("not found");
    await expect(vault.set("beta/short", "abc", { actor: "a" })).rejects.toThrow("at least");
    await expect(vault.set("Beta/x", V1, { actor: "a" })).rejects.toThrow("not a secret scope");
  });

  test("after a rotation both values are valid during the grace period, then only the new one", async () => {
    const { vault, clock } = setup();
    await vault.set("beta/crm-signing", V1, { actor: "a" });
    const info = await vault.rotate("beta/crm-signing", V2, { actor: "a", graceMs: 60_000 });
    expect(info.version).toBe(2);
    expect(vault.redeem((await vault.lease("beta/crm-signing", { forTenant: "beta", consumer: "c" })).id)).toEqual([
      V2,
      V1,
    ]);
    clock.advance(60_000);
    expect(vault.redeem((await vault.lease("beta/crm-signing", { forTenant: "beta", consumer: "c" })).id)).toEqual([
      V2,
    ]);
  });

  test("a lease expires within seconds", async () => {
    const { vault, clock } = setup();
    await vault.set("beta/x-token", V1, { actor: "a" });
    const lease = await vault.lease("beta/x-token", { forTenant: "beta", consumer: "c" });
    clock.advance(LEASE_TTL_MS);
    expect(() => vault.redeem(lease.id)).toThrow("expired");
  });

  test("a lease on another tenant's secret is refused, and the refusal is audited", async () => {
    const { vault, storage } = setup();
    await vault.set("beta/crm-signing", V1, { actor: "a" });
    await expect(vault.lease("beta/crm-signing", { forTenant: "alpha", consumer: "runtime:rt_9" })).rejects.toThrow(
      "may not lease",
    );
    const [entry] = await storage.audit.list({ action: "secret.lease", limit: 1 });
    expect(entry).toMatchObject({
      actor: "runtime:rt_9",
      tenant: "alpha",
      target: "beta/crm-signing",
      decision: "deny",
    });
    const actions = (await storage.audit.list({ limit: 10 })).map((e) => e.action).reverse();
    expect(actions).toEqual(["secret.set", "secret.lease"]);
    expect((await storage.audit.verify()).ok).toBe(true);
  });

  test("the log redactor learns every value the vault sees", async () => {
    const { vault, redactor } = setup();
    const lines: string[] = [];
    const log = createLogger({ level: "debug", redactor, sink: (l) => lines.push(l) });
    await vault.set("beta/a-secret", V1, { actor: "a" });
    await vault.rotate("beta/a-secret", V2, { actor: "a" });
    log.info(`oops, logging ${V1} and ${V2}`, { header: `v1,${V2}` });
    expect(lines.join("\n")).not.toContain(V1);
    expect(lines.join("\n")).not.toContain(V2);
  });

  test("no secret value is stored in plaintext: not in the database file, not in the WAL", async () => {
    const { vault, storage } = setup();
    await vault.set("beta/crm-signing", V1, { actor: "a" });
    await vault.rotate("beta/crm-signing", V2, { actor: "a" });
    vault.redeem((await vault.lease("beta/crm-signing", { forTenant: "beta", consumer: "c" })).id);
    const files = readdirSync(storage.dir).filter((f) => f.startsWith("agentowl.db"));
    expect(files).toContain("agentowl.db-wal");
    for (const f of files) {
      const bytes = readFileSync(join(storage.dir, f));
      for (const v of [V1, V2]) {
        expect(bytes.includes(Buffer.from(v)), `${v} in ${f}`).toBe(false);
        expect(bytes.includes(Buffer.from(v, "utf16le")), `${v} (UTF-16) in ${f}`).toBe(false);
      }
    }
  });
});

describe("rotation reminders", () => {
  test("name the secrets whose declared period runs out within the horizon, overdue ones included", async () => {
    const { vault, clock } = setup();
    const day = 86_400_000;
    await vault.set("beta/monthly", V1, { actor: "a", rotationPeriodMs: 30 * day });
    await vault.set("beta/yearly", V2, { actor: "a", rotationPeriodMs: 365 * day });
    await vault.set("beta/forever", "never-rotated-value", { actor: "a" });
    expect(await vault.dueForRotation(7 * day)).toEqual([]);
    clock.advance(25 * day);
    expect((await vault.dueForRotation(7 * day)).map((s) => s.name)).toEqual(["monthly"]);
    clock.advance(10 * day);
    expect((await vault.dueForRotation(0)).map((s) => s.name)).toEqual(["monthly"]);
    await vault.rotate("beta/monthly", `${V1}-2`, { actor: "a" });
    expect(await vault.dueForRotation(7 * day)).toEqual([]);
  });
});

describe("master-key rotation", () => {
  const keyDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "agentowl-keys-"));
    dirsToRemove.push(dir);
    return join(dir, "master.key");
  };
  const dirsToRemove: string[] = [];
  afterEach(() => dirsToRemove.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  function vaultOn(storage: ReturnType<typeof newStorage>, keyFile: string) {
    return new Vault(storage, loadKeyring(keyFile).ring, new Redactor(), new ManualClock(Date.now()), keyFile);
  }

  test("re-wraps every data key while reads go on, and a restart opens everything with the new key", async () => {
    const storage = newStorage();
    const keyFile = keyDir();
    const vault = vaultOn(storage, keyFile);
    const oldId = vault.masterKeyId;
    const values = Array.from({ length: 30 }, (_, i) => `secret-value-number-${i}-abcdef`);
    for (const [i, v] of values.entries()) await vault.set(`beta/s${i}`, v, { actor: "a" });

    let reads = 0;
    let running = true;
    const reader = (async () => {
      while (running) {
        const i = reads % values.length;
        const lease = await vault.lease(`beta/s${i}`, { forTenant: "beta", consumer: "c" });
        expect(vault.redeem(lease.id)).toEqual([values[i]!]);
        reads++;
      }
    })();
    const result = await vault.rotateMaster({ actor: "admin", batch: 3 });
    running = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(result.rewrapped).toBe(30);
    expect(result.masterKeyId).not.toBe(oldId);
    expect(loadMasterKey(keyFile).id).toBe(result.masterKeyId);
    expect(loadMasterKey(`${keyFile}.previous`).id).toBe(oldId);
    expect(existsSync(`${keyFile}.next`)).toBe(false);

    // A new process with only the new key file opens every secret.
    rmSync(`${keyFile}.previous`);
    const restarted = vaultOn(storage, keyFile);
    for (const [i, v] of values.entries())
      expect(restarted.redeem((await restarted.lease(`beta/s${i}`, { forTenant: "beta", consumer: "c" })).id)).toEqual([
        v,
      ]);
    const [entry] = await storage.audit.list({ action: "vault.rotate_master", limit: 1 });
    expect(entry).toMatchObject({ actor: "admin", details: { from: oldId, to: result.masterKeyId, rewrapped: 30 } });
  });

  test("an interrupted rotation leaves every secret readable, and the next start finishes it", async () => {
    const storage = newStorage();
    const keyFile = keyDir();
    const vault = vaultOn(storage, keyFile);
    await vault.set("beta/a-secret", V1, { actor: "a" });
    // Crash right after the new key file was written, before any row was re-wrapped.
    const next = generateMasterKey();
    writeKeyFile(`${keyFile}.next`, next);
    const resumed = vaultOn(storage, keyFile);
    expect(resumed.masterKeyId).toBe(next.id);
    expect(resumed.redeem((await resumed.lease("beta/a-secret", { forTenant: "beta", consumer: "c" })).id)).toEqual([
      V1,
    ]);
    await resumed.set("beta/b-secret", V2, { actor: "a" });
    expect((await resumed.rotateMaster({ actor: "system" })).masterKeyId).toBe(next.id);
    expect(loadMasterKey(keyFile).id).toBe(next.id);
  });

  test("a crash between the two renames is finished at start, never answered with a new key", async () => {
    const storage = newStorage();
    const keyFile = keyDir();
    const vault = vaultOn(storage, keyFile);
    await vault.set("beta/a-secret", V1, { actor: "a" });
    const next = generateMasterKey();
    writeKeyFile(`${keyFile}.next`, next);
    renameSync(keyFile, `${keyFile}.previous`); // the first rename happened, the second did not
    const resumed = vaultOn(storage, keyFile);
    expect(loadMasterKey(keyFile).id).toBe(next.id);
    expect(resumed.redeem((await resumed.lease("beta/a-secret", { forTenant: "beta", consumer: "c" })).id)).toEqual([
      V1,
    ]);
  });
});

describe("Standard Webhooks signing secrets", () => {
  test("whsec_ and the strict base64 of 24 to 64 bytes, as the official libraries take them", async () => {
    const b64 = (n: number) => Buffer.alloc(n, 7).toString("base64");
    for (const ok of [`whsec_${b64(24)}`, `whsec_${b64(32)}`, `whsec_${b64(64)}`])
      expect(isSigningSecret(ok), ok).toBe(true);
    for (const bad of [
      b64(32),
      `whsec_${b64(16)}`,
      `whsec_${b64(65)}`,
      "whsec_not base64!",
      `whsec_${b64(32).replace(/=+$/, "")}`,
      "crm-signing-secret-value",
      `whsec_${b64(32)}\n`,
    ]) {
      expect(isSigningSecret(bad), bad).toBe(false);
    }
  });

  test("a secret's format is noted when it is set and rotated, never its value", async () => {
    const { vault } = setup();
    expect((await vault.set("beta/plain", "an-opaque-api-key-value", { actor: "a" })).format).toBe("opaque");
    expect(
      (await vault.set("beta/sig", `whsec_${Buffer.alloc(32, 1).toString("base64")}`, { actor: "a" })).format,
    ).toBe("whsec");
    expect(
      (await vault.rotate("beta/plain", `whsec_${Buffer.alloc(32, 2).toString("base64")}`, { actor: "a" })).format,
    ).toBe("whsec");
  });
});
