import { describe, expect, test } from "bun:test";
import { tempStorages } from "../../test/helpers/storage.ts";
import { ManualClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import {
  Authenticator,
  canAccess,
  generateToken,
  type Principal,
  SCOPE_PATTERN,
  seedBootstrapToken,
  sha256Hex,
  visibleTenants,
} from "./auth.ts";

const storage = tempStorages();
const principal = (...scopes: string[]): Principal => ({ tokenId: "tok_x", name: "t", scopes });

describe("scopes", () => {
  test("admin sees and writes everything; tenant scopes see and write only their tenant", () => {
    expect(canAccess(principal("admin"), "any", "write")).toBe(true);
    const reader = principal("tenant:alpha:read");
    expect(canAccess(reader, "alpha", "read")).toBe(true);
    expect(canAccess(reader, "alpha", "write")).toBe(false);
    expect(canAccess(reader, "beta", "read")).toBe(false);
    const writer = principal("tenant:alpha:write", "tenant:gamma:read");
    expect(canAccess(writer, "alpha", "read")).toBe(true);
    expect(canAccess(writer, "alpha", "write")).toBe(true);
    expect(visibleTenants(writer)).toEqual(["alpha", "gamma"]);
    expect(visibleTenants(principal("admin"))).toBe("all");
    expect(visibleTenants(principal("ingest"))).toEqual([]);
  });

  test("the scope grammar admits exactly the documented scopes", () => {
    for (const ok of ["admin", "ingest", "tenant:beta:read", "tenant:a-1:write"])
      expect(SCOPE_PATTERN.test(ok)).toBe(true);
    for (const bad of ["root", "tenant:beta", "tenant:Beta:read", "tenant:beta:admin", "admin ", "tenant:-x:read"])
      expect(SCOPE_PATTERN.test(bad)).toBe(false);
  });
});

describe("tokens", () => {
  test("carry 256 random bits and are found only by their hash", async () => {
    const s = storage();
    const clock = new ManualClock();
    const token = generateToken();
    expect(token).toMatch(/^aow_[A-Za-z0-9_-]{43}$/);
    await s.tokens.create({
      name: "ci",
      hash: sha256Hex(token),
      scopes: ["tenant:a:read"],
      expiresAt: clock.now() + 1000,
      createdBy: "test",
    });
    const auth = new Authenticator(s.tokens, clock);
    expect((await auth.authenticate(`Bearer ${token}`)).scopes).toEqual(["tenant:a:read"]);
    expect((await auth.authenticate(`bearer   ${token}  `)).name).toBe("ci");
    await expect(auth.authenticate(`Bearer ${token}x`)).rejects.toThrow("not valid");
    await expect(auth.authenticate(token)).rejects.toThrow("required");
    clock.advance(1000);
    await expect(auth.authenticate(`Bearer ${token}`)).rejects.toThrow("not valid");
    const stored = s.handle.sqlite.query<{ hash: string }, []>("SELECT hash FROM tokens").get()!;
    expect(stored.hash).toBe(sha256Hex(token));
    expect(JSON.stringify(s.handle.sqlite.query("SELECT * FROM tokens").all())).not.toContain(token);
  });
});

describe("the bootstrap token", () => {
  const BOOT = "bootstrap-token-0123456789abcdef";

  test("becomes the first admin when none exists, and only then", async () => {
    const s = storage();
    const clock = new ManualClock();
    expect(await seedBootstrapToken(s.tokens, BOOT, clock, silentLogger)).toBe(true);
    expect(await seedBootstrapToken(s.tokens, BOOT, clock, silentLogger)).toBe(false);
    expect(await seedBootstrapToken(s.tokens, "another-bootstrap-token-0123456", clock, silentLogger)).toBe(false);
    expect(await s.tokens.countActiveAdmins(clock.now())).toBe(1);
  });

  test("once revoked, it stays revoked: a restart with the same variable does not bring it back", async () => {
    const s = storage();
    const clock = new ManualClock();
    await seedBootstrapToken(s.tokens, BOOT, clock, silentLogger);
    const record = await s.tokens.findByHash(sha256Hex(BOOT));
    await s.tokens.revoke(record!.id, "test");
    expect(await seedBootstrapToken(s.tokens, BOOT, clock, silentLogger)).toBe(false);
    expect(await s.tokens.countActiveAdmins(clock.now())).toBe(0);
  });
});
