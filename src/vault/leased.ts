import type { Clock } from "../core/clock.ts";
import type { Vault } from "./vault.ts";

/** Leased secret values are kept this long at most (and dropped at once when the vault changes). */
const SECRET_TTL_MS = 60_000;

/**
 * Secret values from vault leases, kept briefly: a lease per request or per delivery would audit
 * every one of them. Used by the ingress verifiers and the dispatcher's signer; each consumer
 * leases for its own tenant only (the vault refuses and audits anything else).
 */
export class LeasedSecrets {
  private readonly cache = new Map<string, { values: string[]; until: number; generation: number }>();
  private readonly pending = new Map<string, Promise<string[]>>();

  constructor(
    private readonly vault: Vault,
    private readonly clock: Clock,
  ) {}

  async values(ref: string, tenant: string, consumer: string): Promise<string[]> {
    const scope = ref.slice("vault:".length);
    const hit = this.cache.get(scope);
    if (hit && hit.until > this.clock.now() && hit.generation === this.vault.generation) return hit.values;
    let p = this.pending.get(scope);
    if (!p) {
      p = (async () => {
        const generation = this.vault.generation;
        const lease = await this.vault.lease(scope, { forTenant: tenant, consumer });
        const values = this.vault.redeem(lease.id);
        this.cache.set(scope, { values, until: this.clock.now() + SECRET_TTL_MS, generation });
        return values;
      })().finally(() => this.pending.delete(scope));
      this.pending.set(scope, p);
    }
    return p;
  }
}
