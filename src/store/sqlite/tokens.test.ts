import { expect, test } from "bun:test";
import { tempStorages } from "../../../test/helpers/storage.ts";

const newStorage = tempStorages();

test("a token is found by its hash and by its id (the audit log names a token's actions by it); an unknown id is null", async () => {
  const storage = newStorage();
  const t = await storage.tokens.create({
    name: "initial-admin",
    hash: "h".repeat(64),
    scopes: ["admin"],
    expiresAt: null,
    createdBy: "test",
  });
  expect(await storage.tokens.findByHash("h".repeat(64))).toMatchObject({ id: t.id, name: "initial-admin" });
  expect(await storage.tokens.get(t.id)).toMatchObject({ id: t.id, name: "initial-admin", scopes: ["admin"] });
  expect(await storage.tokens.get("tok_01NOSUCHTOKEN0000000000000")).toBeNull();
});
