/**
 * Egress isolation (guarantee 8, docs/guarantees.md): no spelling of a forbidden destination,
 * literal or resolved, gets a connection; the LAN still does.
 *
 * As root with `unshare -n` and `ip`, the matrix (egress-matrix.ts) runs in a private network
 * namespace whose loopback holds the metadata, link-local, NAT64, 6to4 and public addresses, with
 * a real listener on each: every forbidden case must be refused with class egress while the
 * listeners count 0 connections. Elsewhere the same cases run against the guard's own address
 * check (guardDestination), and the output says so (EGRESS_MATRIX_NO_NETNS=1 forces that).
 */
import { describe, expect, test } from "bun:test";
import { EgressRefused, guardDestination } from "../../src/dispatch/egress.ts";
import { CASES, type EgressCase, type EgressResult, NAMESPACE_SETUP } from "./egress-matrix.ts";

const MATRIX = new URL("./egress-matrix.ts", import.meta.url).pathname;

function namespaceUnavailable(): string | null {
  if (process.env.EGRESS_MATRIX_NO_NETNS) return "EGRESS_MATRIX_NO_NETNS is set";
  if (process.platform !== "linux") return `${process.platform} has no network namespaces`;
  if (process.getuid?.() !== 0) return "not root";
  if (!Bun.which("ip")) return "no ip(8)";
  const probe = Bun.spawnSync(["unshare", "-n", "true"], { stdout: "ignore", stderr: "pipe" });
  if (probe.exitCode !== 0) return `unshare -n failed: ${probe.stderr.toString().trim() || `exit ${probe.exitCode}`}`;
  return null;
}

const describeCase = (c: EgressCase) =>
  `${c.url}${c.resolve ? " (a name the resolver answers)" : ""}${c.allowPublic ? " allow_public" : ""}`;
const expected = (c: EgressCase) => (c.expect === "refused" ? "refused" : `delivered to ${c.expect.deliveredTo}`);

describe("egress isolation", () => {
  const why = namespaceUnavailable();

  test.if(why === null)(
    "in a private network namespace, no forbidden form reaches its listener; the LAN still does",
    async () => {
      const proc = Bun.spawn(
        ["unshare", "-n", "sh", "-c", `${NAMESPACE_SETUP}; exec "$0" "$1"`, process.execPath, MATRIX],
        { stdout: "pipe", stderr: "pipe" },
      );
      const [out, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      expect(code, err).toBe(0);
      const results = JSON.parse(out) as EgressResult[];
      expect(results).toHaveLength(CASES.length);
      console.log(
        `egress matrix: ${CASES.length} cases in a private network namespace (unshare -n), listeners on port 80 of every address`,
      );
      const failures: string[] = [];
      CASES.forEach((c, i) => {
        const r = results[i]!;
        const outcome = r.ok ? `delivered to ${r.remoteAddress}` : `${r.errorClass}: ${r.error}`;
        console.log(
          `  ${describeCase(c)} → ${outcome}; connections: ${r.connections.length ? r.connections.join(", ") : "0"}`,
        );
        if (c.expect === "refused") {
          if (r.errorClass !== "egress") failures.push(`${describeCase(c)}: expected egress, got ${outcome}`);
          else if (c.reason && !r.error?.includes(c.reason))
            failures.push(`${describeCase(c)}: the reason does not say "${c.reason}": ${r.error}`);
          if (r.connections.length)
            failures.push(`${describeCase(c)}: a listener saw a connection to ${r.connections.join(", ")}`);
        } else {
          if (!r.ok) failures.push(`${describeCase(c)}: expected ${expected(c)}, got ${outcome}`);
          if (r.connections.join() !== c.expect.deliveredTo)
            failures.push(
              `${describeCase(c)}: expected one connection to ${c.expect.deliveredTo}, the listeners saw ${r.connections.join(", ") || "none"}`,
            );
        }
      });
      expect(failures).toEqual([]);
    },
  );

  test.if(why !== null)(
    "without a network namespace, the guard's own address check refuses every forbidden form",
    async () => {
      console.log(
        `egress matrix: no private network namespace (${why}): checking guardDestination only, nothing connects`,
      );
      const failures: string[] = [];
      for (const c of CASES) {
        const host = new URL(c.url).hostname;
        const outcome = await guardDestination(host, {
          allowPublic: c.allowPublic === true,
          resolve: c.resolve ?? (async () => Promise.reject(new Error("a literal was resolved"))),
        }).then(
          (to) => ({ to: to.address, error: null as Error | null }),
          (e: Error) => ({ to: null, error: e }),
        );
        console.log(
          `  ${describeCase(c)} → ${outcome.to ? `would connect to ${outcome.to}` : `${outcome.error?.name}: ${outcome.error?.message}`}`,
        );
        if (c.expect === "refused") {
          if (!(outcome.error instanceof EgressRefused))
            failures.push(`${describeCase(c)}: expected a refusal, got ${outcome.to ?? outcome.error?.message}`);
          else if (c.reason && !outcome.error.message.includes(c.reason))
            failures.push(`${describeCase(c)}: the reason does not say "${c.reason}": ${outcome.error.message}`);
        } else if (outcome.to !== c.expect.deliveredTo)
          failures.push(`${describeCase(c)}: expected ${expected(c)}, got ${outcome.to ?? outcome.error?.message}`);
      }
      expect(failures).toEqual([]);
    },
  );
});
