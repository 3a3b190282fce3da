import type { Clock } from "../core/clock.ts";
import { newId } from "../core/ids.ts";
import { MIN_SECRET_LENGTH, type Redactor } from "../core/log.ts";
import { AppError } from "../errors/index.ts";
import { NAME_PATTERN, VAULT_REF_PATTERN } from "../control/resources/specs.ts";
import { patternWords } from "../control/resources/validate.ts";
import type { SecretRow, Storage, Tx } from "../store/index.ts";
import { existsSync } from "node:fs";
import {
  generateMasterKey,
  type Keyring,
  type MasterKey,
  openSecret,
  promoteNextKey,
  rewrap,
  type SecretScope,
  sealSecret,
  writeKeyFile,
} from "./crypto.ts";

/** Metadata of a secret: everything but its value, which the vault never hands back. */
export type SecretFormat = "whsec" | "opaque";

/**
 * A Standard Webhooks signing secret as the official libraries (standardwebhooks, svix) take it:
 * `whsec_` and the strict base64 of 24 to 64 bytes. Anything else was decoded leniently and signed
 * deliveries that those libraries reject.
 */
export function isSigningSecret(value: string): boolean {
  const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(value);
  if (!m) return false;
  const bytes = Buffer.from(m[1]!, "base64");
  return bytes.length >= 24 && bytes.length <= 64 && bytes.toString("base64") === m[1];
}

export const SIGNING_SECRET_FORM = "whsec_ and the base64 of 24 to 64 bytes, e.g. whsec_$(openssl rand -base64 32)";

const formatOf = (value: string): SecretFormat => (isSigningSecret(value) ? "whsec" : "opaque");

export interface SecretInfo {
  tenant: string;
  name: string;
  version: number;
  versions: { version: number; createdAt: number; expiresAt: number | null }[];
  rotationPeriodMs: number | null;
  /** What the current value looks like (noted when set; never the value): null when set before this was noted. */
  format: SecretFormat | null;
  /** When the current version is due for rotation, when a period is declared. */
  rotationDueAt: number | null;
}

export interface Lease {
  id: string;
  scope: string;
  consumer: string;
  expiresAt: number;
}

export const LEASE_TTL_MS = 10_000;

/** The crypto works on Buffers; a driver may hand back any Uint8Array. */
const asBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const sealedOf = (r: SecretRow) => ({
  masterKeyId: r.masterKeyId,
  wrappedKey: asBuffer(r.wrappedKey),
  sealedValue: asBuffer(r.sealedValue),
});
export const DEFAULT_GRACE_MS = 24 * 3_600_000;
/** A scope is what follows `vault:` in a reference (the same pattern the resource schemas check). */
const SCOPE = new RegExp(`^${VAULT_REF_PATTERN.slice("^vault:".length)}`);
const SECRET_NAME = new RegExp(NAME_PATTERN);

/** `tenant/name`, as `vault:` references write it. */
export function parseScope(scope: string): { tenant: string; name: string } {
  if (!SCOPE.test(scope)) throw new AppError("invalid_input", `'${scope}' is not a secret scope (tenant/name)`);
  const slash = scope.indexOf("/");
  return { tenant: scope.slice(0, slash), name: scope.slice(slash + 1) };
}

/**
 * The vault (docs/api.md#vault): sealed secrets in the database, values out only through single-use,
 * short-lived leases scoped to one tenant. Every set, rotation and lease (granted or refused) is
 * audited in the same transaction as the change it records; every value the vault sees is taught
 * to the log redactor.
 */
export class Vault {
  /** Each lease holds the secret's sealed versions as they were when it was granted. */
  private readonly leases = new Map<string, Lease & { tenant: string; name: string; rows: SecretRow[] }>();

  constructor(
    private readonly storage: Storage,
    private ring: Keyring,
    private readonly redactor: Redactor,
    private readonly clock: Clock,
    /** The master key file, for rotate-master; absent in tests that do not rotate. */
    private readonly keyFile: string | null = null,
  ) {}

  private changes = 0;

  /**
   * Bumped whenever a secret's values change (set, rotate). A consumer that keeps leased values
   * for a while (the ingress verifiers) drops them when this moves, so a rotation is seen at once.
   */
  get generation(): number {
    return this.changes;
  }

  private keyFor(id: string): MasterKey {
    const key = this.ring.byId.get(id);
    if (!key) throw new AppError("internal", "a vault secret is sealed with a master key this process does not have");
    return key;
  }

  private write(tx: Tx, s: SecretScope, value: string, actor: string, rotationPeriodMs: number | null): void {
    const sealed = sealSecret(this.ring.sealing, s, value);
    this.storage.secrets.insertTx(tx, {
      ...s,
      masterKeyId: sealed.masterKeyId,
      wrappedKey: sealed.wrappedKey,
      sealedValue: sealed.sealedValue,
      createdAt: tx.now,
      createdBy: actor,
      expiresAt: null,
      rotationPeriodMs,
      format: formatOf(value),
    });
  }

  private checkValue(value: string): void {
    if (value.length < MIN_SECRET_LENGTH)
      throw new AppError("invalid_input", `a secret value has at least ${MIN_SECRET_LENGTH} characters`);
  }

  /** Whether a secret exists, read inside a unit of work (apply checks its references there). */
  async describe(scope: string): Promise<SecretInfo | null> {
    return this.info(scope).catch(() => null);
  }

  existsTx(tx: Tx, scope: string): boolean {
    return this.storage.secrets.existsTx(tx, parseScope(scope));
  }

  /** Create a secret (version 1). An existing one is a conflict: rotate it instead. */
  async set(
    scope: string,
    value: string,
    opts: { actor: string; rotationPeriodMs?: number | null },
  ): Promise<SecretInfo> {
    // A new secret is named like every resource. (References keep their wider pattern, so that a
    // secret already stored under a name outside the rule can still be used and rotated.)
    const name = scope.slice(scope.indexOf("/") + 1);
    if (!SECRET_NAME.test(name)) {
      throw new AppError("invalid_input", `'${name.slice(0, 80)}${name.length > 80 ? "…" : ""}' is not a secret name`, {
        errors: [{ field: "/name", message: `must be ${patternWords(NAME_PATTERN)}` }],
      });
    }
    const { tenant } = parseScope(scope);
    this.checkValue(value);
    this.redactor.learn(value);
    await this.storage.committer.run((tx) => {
      if (this.storage.secrets.existsTx(tx, { tenant, name }))
        throw new AppError("conflict", `secret ${tenant}/${name} exists: rotate it`);
      this.storage.audit.appendTx(tx, {
        actor: opts.actor,
        tenant,
        action: "secret.set",
        target: `${tenant}/${name}`,
        details: { version: 1 },
      });
      this.write(tx, { tenant, name, version: 1 }, value, opts.actor, opts.rotationPeriodMs ?? null);
    });
    this.changes++;
    return (await this.info(scope))!;
  }

  /** A new version; the previous current one stays valid for `graceMs`. */
  async rotate(scope: string, value: string, opts: { actor: string; graceMs?: number }): Promise<SecretInfo> {
    const { tenant, name } = parseScope(scope);
    this.checkValue(value);
    this.redactor.learn(value);
    await this.storage.committer.run((tx) => {
      const [current] = this.storage.secrets.versionsTx(tx, { tenant, name });
      if (!current) throw new AppError("not_found", `secret ${tenant}/${name} not found`);
      const version = current.version + 1;
      const grace = opts.graceMs ?? DEFAULT_GRACE_MS;
      this.storage.audit.appendTx(tx, {
        actor: opts.actor,
        tenant,
        action: "secret.rotate",
        target: `${tenant}/${name}`,
        details: { version, grace_ms: grace },
      });
      this.storage.secrets.expireCurrentTx(tx, { tenant, name }, tx.now + grace);
      this.write(tx, { tenant, name, version }, value, opts.actor, current.rotationPeriodMs);
    });
    this.changes++;
    return (await this.info(scope))!;
  }

  async info(scope: string): Promise<SecretInfo | null> {
    const { tenant, name } = parseScope(scope);
    const rows = await this.storage.secrets.versions({ tenant, name });
    const current = rows[0];
    if (!current) return null;
    return {
      tenant,
      name,
      version: current.version,
      versions: rows.map((r) => ({ version: r.version, createdAt: r.createdAt, expiresAt: r.expiresAt })),
      rotationPeriodMs: current.rotationPeriodMs,
      format: current.format ?? null,
      rotationDueAt: current.rotationPeriodMs === null ? null : current.createdAt + current.rotationPeriodMs,
    };
  }

  /** Metadata of a tenant's secrets, or every tenant's. */
  async list(tenant?: string): Promise<SecretInfo[]> {
    const rows = await this.storage.secrets.names(tenant);
    const out: SecretInfo[] = [];
    for (const r of rows) out.push((await this.info(`${r.tenant}/${r.name}`))!);
    return out;
  }

  /** Secrets whose declared rotation falls due before `now + horizonMs` (overdue ones included). */
  async dueForRotation(horizonMs: number): Promise<SecretInfo[]> {
    const until = this.clock.now() + horizonMs;
    return (await this.list()).filter((s) => s.rotationDueAt !== null && s.rotationDueAt <= until);
  }

  /**
   * A lease on one secret for a consumer acting for `forTenant`: usable once, within seconds.
   * A lease on another tenant's secret is refused, and the refusal is audited.
   */
  async lease(scope: string, opts: { forTenant: string; consumer: string }): Promise<Lease> {
    const { tenant, name } = parseScope(scope);
    const allowed = tenant === opts.forTenant;
    const now = this.clock.now();
    const lease = {
      id: newId("sec", now),
      scope: `${tenant}/${name}`,
      consumer: opts.consumer,
      expiresAt: now + LEASE_TTL_MS,
      tenant,
      name,
    };
    await this.storage.audit.append({
      actor: opts.consumer,
      tenant: opts.forTenant,
      action: "secret.lease",
      target: lease.scope,
      decision: allowed ? "allow" : "deny",
      details: allowed
        ? { lease: lease.id, expires_at: lease.expiresAt }
        : { reason: "the secret belongs to another tenant" },
    });
    if (!allowed)
      throw new AppError("forbidden", `a consumer of tenant ${opts.forTenant} may not lease ${lease.scope}`);
    const rows = await this.storage.secrets.versions({ tenant, name });
    if (!rows.length) throw new AppError("not_found", `secret ${lease.scope} not found`);
    this.leases.set(lease.id, { ...lease, rows });
    const { tenant: _t, name: _n, ...out } = lease;
    return out;
  }

  /**
   * The values a lease grants, once: the current version first, then any previous version still
   * in its grace period (a verifier accepts either while senders move over). The versions are the
   * ones read when the lease was granted, so redeeming reads no storage and stays synchronous;
   * a lease lives seconds, and a consumer redeems it as soon as it has it.
   */
  redeem(leaseId: string): string[] {
    const lease = this.leases.get(leaseId);
    this.leases.delete(leaseId);
    if (!lease) throw new AppError("forbidden", "this lease was used already or never existed");
    const now = this.clock.now();
    if (lease.expiresAt <= now) throw new AppError("forbidden", "this lease has expired");
    const valid = lease.rows.filter((r) => r.expiresAt === null || r.expiresAt > now);
    return valid.map((r) => {
      const value = openSecret(
        this.keyFor(r.masterKeyId),
        { tenant: r.tenant, name: r.name, version: r.version },
        sealedOf(r),
      );
      this.redactor.learn(value);
      return value;
    });
  }

  /** The master key new secrets are sealed with. */
  get masterKeyId(): string {
    return this.ring.sealing.id;
  }

  /**
   * Re-wrap every data key under a new master key, without downtime (docs/api.md#vault): the new key is
   * written (and fsynced) as `master.key.next` first and used for new secrets at once; rows are
   * re-wrapped in small transactions while both keys stay loaded, so reads never stop; then the
   * files are swapped. A crash at any step leaves every row readable, and the next start resumes.
   */
  async rotateMaster(opts: { actor: string; batch?: number }): Promise<{ rewrapped: number; masterKeyId: string }> {
    if (!this.keyFile)
      throw new AppError(
        "conflict",
        "the master key comes from a systemd credential (or no file): rotate it where it is kept",
      );
    const from = this.ring.sealing;
    let to = from;
    if (!this.ring.rotating || !existsSync(`${this.keyFile}.next`)) {
      to = generateMasterKey();
      writeKeyFile(`${this.keyFile}.next`, to);
      this.ring = { sealing: to, byId: new Map([...this.ring.byId, [to.id, to]]), rotating: true };
    }
    let rewrapped = 0;
    for (;;) {
      const n = await this.storage.committer.run((tx) => {
        const rows = this.storage.secrets.sealedWithOtherKeyTx(tx, to.id, opts.batch ?? 200);
        for (const r of rows) {
          const scope = { tenant: r.tenant, name: r.name, version: r.version };
          const moved = rewrap(this.keyFor(r.masterKeyId), to, scope, sealedOf(r));
          this.storage.secrets.rewrapTx(tx, scope, moved);
        }
        return rows.length;
      });
      rewrapped += n;
      if (n === 0) break;
    }
    promoteNextKey(this.keyFile);
    this.ring = { ...this.ring, rotating: false };
    await this.storage.audit.append({
      actor: opts.actor,
      action: "vault.rotate_master",
      details: { from: from.id === to.id ? null : from.id, to: to.id, rewrapped },
    });
    return { rewrapped, masterKeyId: to.id };
  }
}
