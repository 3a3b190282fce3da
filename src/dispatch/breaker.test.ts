import { describe, expect, test } from "bun:test";
import { ManualClock } from "../core/clock.ts";
import { Breakers, CircuitBreaker } from "./breaker.ts";

describe("CircuitBreaker", () => {
  test("opens after the threshold of consecutive failures; a success in between resets the count", () => {
    const clock = new ManualClock(0);
    const b = new CircuitBreaker({ threshold: 3, cooldownMs: 1000, clock });
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state).toBe("closed");
    b.failure();
    expect(b.view()).toEqual({ state: "open", consecutiveFailures: 3, retryAt: 1000 });
    expect(b.tryAcquire()).toBe(false);
  });

  test("after the cooldown one probe goes; its success closes, its failure opens for another cooldown", () => {
    const clock = new ManualClock(0);
    const b = new CircuitBreaker({ threshold: 1, cooldownMs: 1000, clock });
    b.failure();
    clock.advance(999);
    expect(b.tryAcquire()).toBe(false);
    clock.advance(1);
    expect(b.state).toBe("half_open");
    expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(false);
    b.failure();
    expect(b.state).toBe("open");
    clock.advance(1000);
    expect(b.tryAcquire()).toBe(true);
    b.success();
    expect(b.state).toBe("closed");
    expect([b.tryAcquire(), b.tryAcquire()]).toEqual([true, true]);
  });

  test("Breakers keeps one per endpoint and lists the ones not closed", () => {
    const all = new Breakers({ threshold: 1, cooldownMs: 500, clock: new ManualClock(0) });
    all.for("beta/crm").failure();
    all.for("beta/erp").success();
    expect(all.troubled()).toEqual([["beta/crm", { state: "open", consecutiveFailures: 1, retryAt: 500 }]]);
    expect(all.for("beta/crm")).toBe(all.for("beta/crm"));
  });

  test("a breaker belongs to its URL: a changed URL finds the circuit closed, the same URL keeps it open", () => {
    const all = new Breakers({ threshold: 1, cooldownMs: 30_000, clock: new ManualClock(0) });
    all.for("beta/crm", "http://127.0.0.1:1/").failure();
    expect(all.for("beta/crm", "http://127.0.0.1:1/").state).toBe("open");
    expect(all.for("beta/crm").state).toBe("open");
    expect(all.for("beta/crm", "http://127.0.0.1:9000/").state).toBe("closed");
    expect(all.peek("beta/crm").state).toBe("closed");
  });

  test("reset forgets a circuit and says whether it was open", () => {
    const all = new Breakers({ threshold: 1, cooldownMs: 30_000, clock: new ManualClock(0) });
    all.for("beta/crm", "u").failure();
    expect(all.reset("beta/crm")).toBe(true);
    expect(all.peek("beta/crm").state).toBe("closed");
    expect(all.reset("beta/crm")).toBe(false);
  });
});
