import { randomBytes } from "node:crypto";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { AppError } from "../errors/index.ts";
import { NAME_PATTERN } from "../control/resources/specs.ts";
import type { TokenRecord, TokenStore } from "../store/index.ts";

/**
 * Bearer API tokens (docs/api.md) and what they may do. Scopes:
 *   admin                    everything, every tenant
 *   tenant:<name>:read       read that tenant's resources, events, deliveries
 *   tenant:<name>:write      the same, and change them
 *   ingest                   reserved for ingress clients that post events
 * Across tenants the answer is always 404, never 403, so that a token cannot probe which other
 * tenants or resources exist (guarantee 5 (docs/guarantees.md)).
 */
export const SCOPE_PATTERN = /^(admin|ingest|tenant:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?:(read|write))$/;
export const TOKEN_PREFIX = "aow_";
const TENANT_NAME = new RegExp(NAME_PATTERN);

export interface Principal {
  tokenId: string;
  name: string;
  scopes: readonly string[];
}

export const sha256Hex = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex");

/** 256 random bits, base64url: `aow_…`. */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString("base64url");
}

export const isAdmin = (p: Principal): boolean => p.scopes.includes("admin");

export function canAccess(p: Principal, tenant: string, access: "read" | "write"): boolean {
  if (isAdmin(p)) return true;
  if (p.scopes.includes(`tenant:${tenant}:write`)) return true;
  return access === "read" && p.scopes.includes(`tenant:${tenant}:read`);
}

/** Tenants a principal can see: every one for an admin, else those its scopes name. */
export function visibleTenants(p: Principal): "all" | string[] {
  if (isAdmin(p)) return "all";
  return [...new Set(p.scopes.flatMap((s) => /^tenant:([^:]+):(read|write)$/.exec(s)?.[1] ?? []))];
}

/**
 * The tenants a list may show: the one asked for (404 when not visible, as if it did not exist),
 * else every visible one (undefined: all, for an admin).
 */
export function tenantsFor(p: Principal, tenant: string | undefined): readonly string[] | undefined {
  if (tenant !== undefined) {
    if (!canAccess(p, tenant, "read")) throw new AppError("not_found", "not found");
    return [tenant];
  }
  const visible = visibleTenants(p);
  return visible === "all" ? undefined : visible;
}

/**
 * 404 when the tenant is not visible (it may as well not exist), or when its name is one no
 * tenant can have (an admin's secret for `/v1/tenants/<5,000 a's>` was stored); 403 when it is
 * visible but read-only.
 */
export function requireTenant(p: Principal, tenant: string, access: "read" | "write"): void {
  if (!TENANT_NAME.test(tenant) || !canAccess(p, tenant, "read")) throw new AppError("not_found", "not found");
  if (access === "write" && !canAccess(p, tenant, "write"))
    throw new AppError("forbidden", `this token may only read tenant ${tenant}`);
}

export function requireAdmin(p: Principal): void {
  if (!isAdmin(p)) throw new AppError("forbidden", "this needs an admin token");
}

export class Authenticator {
  constructor(
    private readonly tokens: TokenStore,
    private readonly clock: Clock,
  ) {}

  /**
   * The token is looked up by its SHA-256: the lookup's timing depends only on the hash, which
   * tells an attacker nothing about the token, so no constant-time comparison is needed here.
   */
  async authenticate(authorization: string | null | undefined): Promise<Principal> {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
    if (!m) throw new AppError("unauthenticated", "an API token is required (Authorization: Bearer <token>)");
    const record = await this.tokens.findByHash(sha256Hex(m[1]!));
    if (!record || !this.usable(record))
      throw new AppError("unauthenticated", "the API token is not valid (unknown, expired or revoked)");
    return { tokenId: record.id, name: record.name, scopes: record.scopes };
  }

  private usable(t: TokenRecord): boolean {
    return t.revokedAt === null && (t.expiresAt === null || t.expiresAt > this.clock.now());
  }
}

/**
 * docs/configuration.md: when AGENTOWL_BOOTSTRAP_TOKEN is set and no admin token exists, it becomes the first
 * admin token. Once any admin exists the variable is ignored (and can be removed).
 */
export async function seedBootstrapToken(
  tokens: TokenStore,
  token: string | null,
  clock: Clock,
  log: Logger,
): Promise<boolean> {
  if (!token || (await tokens.countActiveAdmins(clock.now())) > 0) return false;
  const existing = await tokens.findByHash(sha256Hex(token));
  if (existing) return false; // the bootstrap token was used before and then revoked: stay revoked
  const record = await tokens.create({
    name: "bootstrap",
    hash: sha256Hex(token),
    scopes: ["admin"],
    expiresAt: null,
    createdBy: "AGENTOWL_BOOTSTRAP_TOKEN",
  });
  log.info("bootstrap admin token created", { token_id: record.id });
  return true;
}
