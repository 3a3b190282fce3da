import { describe, expect, test } from "bun:test";
import type { DeliveryRow } from "../store/index.ts";
import { timeline } from "./deliveries.ts";

const span = (name: string, start: string) => ({
  name,
  start: `2026-11-22T10:00:00.${start}Z`,
  duration_ms: 1,
  outcome: "ok" as const,
});
const delivery = (id: string, trace: ReturnType<typeof span>[]) =>
  ({ id, endpoint: `ep-${id}`, trace }) as unknown as DeliveryRow;

describe("an event's timeline", () => {
  test("the event's spans keep their pipeline order even when their millisecond starts round backwards; task spans merge in by start", () => {
    const event = [
      span("smtp.data", "005"),
      span("spool.write", "004"),
      span("ingress.commit", "006"),
      span("route", "010"),
    ];
    const merged = timeline(event, [
      delivery("b", [span("policy.eval", "012"), span("delivery", "020")]),
      delivery("a", [span("policy.eval", "011"), span("delivery", "015")]),
    ]);
    expect(merged.map((s) => `${s.name}${"delivery" in s && s.delivery ? `@${s.delivery}` : ""}`)).toEqual([
      "smtp.data",
      "spool.write",
      "ingress.commit",
      "route",
      "policy.eval@a",
      "policy.eval@b",
      "delivery@a",
      "delivery@b",
    ]);
  });

  test("a task span that started before a later event span is placed before it", () => {
    const merged = timeline(
      [span("ingress.commit", "001"), span("route", "009")],
      [delivery("a", [span("policy.eval", "005")])],
    );
    expect(merged.map((s) => s.name)).toEqual(["ingress.commit", "policy.eval", "route"]);
  });
});
