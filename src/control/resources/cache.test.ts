import { describe, expect, test } from "bun:test";
import { tempStorages, until } from "../../../test/helpers/storage.ts";
import { ControlPlane } from "../service.ts";
import { ConfigCache, SpecCache } from "./cache.ts";

const temp = tempStorages();

describe("ConfigCache", () => {
  test("loads a key once, and again only after a committed change to the configuration", async () => {
    const storage = temp();
    const control = new ControlPlane(storage.resources, storage.audit);
    let loads = 0;
    const cache = new ConfigCache(storage.resources, async (tenant) => {
      loads++;
      return (await storage.resources.get({ tenant, kind: "tenants", name: tenant }))?.spec ?? null;
    });
    expect(await cache.get("beta")).toBeNull();
    expect(await cache.get("beta")).toBeNull();
    expect(loads).toBe(1);
    await control.put(
      { tenant: "beta", kind: "tenants", name: "beta" },
      { name: "beta" },
      { mode: "create", actor: "test" },
    );
    expect(await cache.get("beta")).toEqual({ name: "beta" });
    expect(loads).toBe(2);
  });

  test("a value loaded while a change commits is not kept", async () => {
    const storage = temp();
    const control = new ControlPlane(storage.resources, storage.audit);
    let release = () => {};
    let loads = 0;
    const cache = new ConfigCache(storage.resources, async () => {
      loads++;
      if (loads === 1) await new Promise<void>((r) => (release = r));
      return loads;
    });
    const first = cache.get("k");
    await until("the first load to start", () => loads === 1);
    await control.put(
      { tenant: "beta", kind: "tenants", name: "beta" },
      { name: "beta" },
      { mode: "create", actor: "test" },
    );
    release();
    expect(await first).toBe(1);
    expect(await cache.get("k")).toBe(2);
  });
});

describe("SpecCache", () => {
  test("one kind's spec by tenant and name, read once until the configuration changes; null when there is none", async () => {
    const storage = temp();
    const control = new ControlPlane(storage.resources, storage.audit);
    await control.put(
      { tenant: "beta", kind: "tenants", name: "beta" },
      { name: "beta" },
      { mode: "create", actor: "t" },
    );
    await control.put(
      { tenant: "beta", kind: "endpoints", name: "crm" },
      { name: "crm", url: "http://127.0.0.1:9/a" },
      { mode: "create", actor: "t" },
    );
    const endpoints = new SpecCache<{ url: string }>(storage.resources, "endpoints");
    expect((await endpoints.get("beta", "crm"))?.url).toBe("http://127.0.0.1:9/a");
    expect(await endpoints.get("beta", "nope")).toBeNull();
    await control.put(
      { tenant: "beta", kind: "endpoints", name: "crm" },
      { name: "crm", url: "http://127.0.0.1:9/b" },
      { mode: "update", actor: "t" },
    );
    expect((await endpoints.get("beta", "crm"))?.url).toBe("http://127.0.0.1:9/b");
  });
});
