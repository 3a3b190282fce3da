import { describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { tempStorages, until } from "../../../test/helpers/storage.ts";
import { BACKSTOP_PAGES } from "./checkpointer.ts";

describe("WAL checkpoints in the background", () => {
  const storage = tempStorages();

  test("a worker thread checkpoints the WAL; the committing connection keeps only a far backstop; close ends both", async () => {
    const s = storage();
    const autocheckpoint = () =>
      s.handle.sqlite.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;
    expect(autocheckpoint()).toBe(1000);
    const errors: string[] = [];
    const ck = s.checkpointInBackground((m) => errors.push(m), 20);
    expect(autocheckpoint()).toBe(BACKSTOP_PAGES);
    for (let b = 0; b < 20; b++)
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          s.committer.run((tx) => tx.emit({ topic: "t", payload: { pad: "x".repeat(500), i } })),
        ),
      );
    // The worker copied every frame of the WAL into the database (PASSIVE: without the writer's help).
    await until("checkpointed", () => (ck.last?.frames ?? 0) > 100 && ck.last!.copied === ck.last!.frames, 5000);
    expect(errors).toEqual([]);
    const path = s.handle.path;
    await s.close();
    // The worker stopped first: the closing checkpoint could copy everything and truncate the WAL.
    expect(existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0).toBe(0);
  });
});
