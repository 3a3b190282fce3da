import { afterEach, expect, test } from "bun:test";
import type { EndpointSpec } from "../control/resources/specs.ts";
import { Connections } from "./connections.ts";

const spec = (url: string, extra: Partial<EndpointSpec> = {}) => ({ name: "crm", url, ...extra }) as EndpointSpec;
let connections: Connections;
afterEach(() => connections.close());

test("one kept-alive agent per endpoint as its spec says: the same spec gets the same agent, a changed spec a new one", () => {
  connections = new Connections(10, 1000);
  const a = spec("http://10.0.0.2/hook");
  const first = connections.for("beta", "crm", a);
  expect(connections.for("beta", "crm", a)).toBe(first);
  // An equal spec in a new object (a configuration re-read) keeps the connections.
  expect(connections.for("beta", "crm", spec("http://10.0.0.2/hook"))).toBe(first);
  // The same spec object under another tenant or name is another endpoint.
  const other = connections.for("gamma", "crm", a);
  expect(other).not.toBe(first);
  expect(connections.for("beta", "erp", a)).not.toBe(first);
  // A changed URL or in-flight limit: a new agent; the old one is retired, and asked for again is made anew.
  const moved = connections.for("beta", "crm", spec("http://10.0.0.3/hook"));
  expect(moved).not.toBe(first);
  expect(connections.for("beta", "crm", spec("http://10.0.0.3/hook", { max_in_flight: 3 }))).not.toBe(moved);
  const again = connections.for("beta", "crm", a);
  expect(again).not.toBe(first);
  expect(connections.for("beta", "crm", a)).toBe(again);
  expect(connections.for("gamma", "crm", a)).toBe(other);
});
