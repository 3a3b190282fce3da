/**
 * A service manager's notify socket for tests: a Unix datagram socket bound by python3 (an
 * independent implementation, not the ffi under test), which prints each datagram it receives.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n", "\\\\n"), flush=True)
`;

export interface NotifySocket {
  path: string;
  /** Every datagram received so far, one string each. */
  received: string[];
  /** Resolves once `message` has arrived; rejects after `ms`. */
  waitFor(message: string, ms?: number): Promise<void>;
  close(): void;
}

export async function notifySocket(): Promise<NotifySocket> {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-notify-"));
  const path = join(dir, "notify.sock");
  const proc = Bun.spawn(["python3", "-c", RECEIVER, path], { stdout: "pipe", stderr: "inherit" });
  const received: string[] = [];
  const waiters = new Set<() => void>();
  let bound!: () => void;
  const isBound = new Promise<void>((r) => (bound = r));
  void (async () => {
    let buffered = "";
    for await (const chunk of proc.stdout) {
      buffered += new TextDecoder().decode(chunk);
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line === "bound") bound();
        else received.push(line);
        for (const w of waiters) w();
      }
    }
  })();
  await isBound;
  return {
    path,
    received,
    waitFor(message, ms = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!received.includes(message)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${message} within ${ms} ms; received ${JSON.stringify(received)}`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
    close() {
      proc.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
