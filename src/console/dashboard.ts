import { stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { Elysia } from "elysia";
import { DashboardLive, DashboardPage, type DashboardView } from "../../web/index.ts";
import { canAccess, visibleTenants } from "../api/auth.ts";
import type { Clock } from "../core/clock.ts";
import type { Rates } from "../store/index.ts";
import { VERIFY_ACTION } from "./audit.ts";
import { type ConsoleKit, iso } from "./kit.ts";
import { fragment, wantsFragment } from "./live.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** How long the charts' counts and the disk figures are reused: live refreshes come on every change. */
export const DASHBOARD_CACHE_MS = 10_000;
/** Tenant sets whose rates are kept at once (each member's set is one); beyond, the oldest goes. */
const CACHE_MAX = 256;

/** The data dir's disk as the dashboard shows it (admins only). */
export interface DiskUsage {
  /** The filesystem holding the data dir: bytes free to this process, and its size. */
  free: number;
  total: number;
  /** The database file and its write-ahead log. */
  database: number;
  /** The SMTP spool's segments. */
  spool: number;
}

/**
 * What the data dir uses. Attachments (blobs) are not counted: they are one file each in a
 * content-addressed tree, and summing them means a walk of the whole tree per look.
 */
export async function dataDirUsage(
  dataDir: string,
  databaseFile: string,
  spoolBytes: () => number,
): Promise<DiskUsage> {
  const size = (name: string) =>
    stat(join(dataDir, name)).then(
      (s) => s.size,
      () => 0,
    );
  const [fs, db, wal] = await Promise.all([statfs(dataDir), size(databaseFile), size(`${databaseFile}-wal`)]);
  return { free: fs.bavail * fs.bsize, total: fs.blocks * fs.bsize, database: db + wal, spool: spoolBytes() };
}

/** The charts' counts: per minute over the last hour, per hour over the last day (the current bucket last). */
export interface DashboardRates {
  hour: { start: number; rates: Rates };
  day: { start: number; rates: Rates };
}

/** A value computed at most once per DASHBOARD_CACHE_MS per key (the clock's time). */
class TtlCache<T> {
  private readonly entries = new Map<string, { at: number; value: Promise<T> }>();
  constructor(private readonly clock: Clock) {}
  get(key: string, compute: () => Promise<T>): Promise<T> {
    const now = this.clock.now();
    const hit = this.entries.get(key);
    if (hit && now - hit.at < DASHBOARD_CACHE_MS) return hit.value;
    this.entries.delete(key);
    if (this.entries.size >= CACHE_MAX) this.entries.delete(this.entries.keys().next().value!);
    const value = compute();
    this.entries.set(key, { at: now, value });
    // A failure is not kept: the next look asks again.
    value.catch(() => this.entries.get(key)?.value === value && this.entries.delete(key));
    return value;
  }
}

/**
 * GET /console (docs/console.md#dashboard): the counters, tables and charts of the tenants the
 * user sees, and, for an admin, the queue, the disk and the audit chain's last verification.
 * An htmx request (the live region re-fetching itself) gets the live part alone. The charts'
 * counts (EventStore.rates) and the disk figures are cached for DASHBOARD_CACHE_MS per tenant
 * set, so a burst of live refreshes runs them once.
 */
export function dashboardRoutes(kit: ConsoleKit) {
  const { storage, deps, signedIn, html, chromeFor, visibleTenantList } = kit;
  const clock = deps.clock;
  const rates = new TtlCache<DashboardRates>(clock);
  const disk = new TtlCache<DiskUsage | null>(clock);

  const diskUnknown = (err: unknown) => {
    deps.log.warn("the dashboard cannot read the data dir's disk usage", { err });
    return null;
  };
  const ratesOf = (tenants: readonly string[] | undefined) =>
    rates.get(tenants ? JSON.stringify([...tenants].sort()) : "*", async () => {
      const now = clock.now();
      const hourEnd = Math.floor(now / MINUTE) * MINUTE + MINUTE;
      const dayEnd = Math.floor(now / HOUR) * HOUR + HOUR;
      const hour = { since: hourEnd - 60 * MINUTE, until: hourEnd, bucketMs: MINUTE, tenants };
      const day = { since: dayEnd - 24 * HOUR, until: dayEnd, bucketMs: HOUR, tenants };
      const [h, d] = await Promise.all([storage.events.rates(hour), storage.events.rates(day)]);
      return { hour: { start: hour.since, rates: h }, day: { start: day.since, rates: d } };
    });

  return new Elysia({ name: "console-dashboard", normalize: false, detail: { hide: true } }).get(
    "/console",
    signedIn(async (v, { request }) => {
      const visible = visibleTenants(v.principal);
      const tenants = visible === "all" ? undefined : visible;
      const admin = visible === "all";
      const [queue, dead, approvals, tenantList, charts, usage, verified] = await Promise.all([
        admin ? storage.queue.activeDepth() : null,
        storage.events.deliveries({ tenants, state: "dead", limit: 101 }),
        storage.approvals.list({ tenants, state: "pending", limit: 101 }),
        visibleTenantList(v),
        ratesOf(tenants),
        admin && deps.usage ? disk.get("*", () => deps.usage!().catch((e) => diskUnknown(e))) : null,
        admin ? storage.audit.list({ action: VERIFY_ACTION, limit: 1 }) : null,
      ]);
      const circuits = deps
        .circuits()
        .map(([key, view]) => {
          const at = key.indexOf("/");
          return { tenant: key.slice(0, at), endpoint: key.slice(at + 1), view };
        })
        .filter((c) => canAccess(v.principal, c.tenant, "read"))
        .map((c) => ({
          tenant: c.tenant,
          endpoint: c.endpoint,
          state: c.view.state,
          failures: c.view.consecutiveFailures,
          retryAt: c.view.retryAt === null ? null : iso(c.view.retryAt),
        }));
      const last = verified?.[0];
      const details = (last?.details ?? {}) as { ok?: unknown; entries?: unknown; problem?: unknown };
      const view: DashboardView = {
        queue: queue
          ? { available: queue.available, scheduled: queue.scheduled, leased: queue.leased, dead: queue.dead }
          : null,
        deadDeliveries: { count: Math.min(dead.length, 100), more: dead.length > 100 },
        approvals: {
          count: Math.min(approvals.length, 100),
          more: approvals.length > 100,
          items: approvals.slice(0, 10).map((a) => ({
            id: a.id,
            tenant: a.tenant,
            what: Object.entries(a.action)
              .map(([k, x]) => `${k}: ${typeof x === "string" ? x : JSON.stringify(x)}`)
              .join(", "),
            expiresAt: iso(a.expiresAt),
          })),
        },
        circuits,
        tenants: tenantList,
        rates: charts,
        disk: usage,
        // undefined: not the user's to see; null: never verified from the console.
        verification: !admin
          ? undefined
          : last
            ? {
                ok: details.ok === true,
                at: iso(last.at),
                by: last.actor,
                entries: Number(details.entries) || 0,
                problem: typeof details.problem === "string" ? details.problem : null,
              }
            : null,
      };
      if (wantsFragment(request)) return fragment(DashboardLive({ view }));
      return html(DashboardPage({ chrome: chromeFor(v, "dashboard"), view }), 200, { vary: "HX-Request" });
    }),
  );
}
