import type { CommandIO } from "./command.ts";
import { CommandFailure, EXIT } from "./exit-codes.ts";

/** The real process as a CommandIO: stdout, stderr, stdin, the terminal, signals. */
export function processIO(): CommandIO {
  let interrupted: AbortController | null = null;
  return {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    cwd: process.cwd(),
    tty: { stdin: Boolean(process.stdin.isTTY), stderr: Boolean(process.stderr.isTTY) },
    readStdin: () => Bun.stdin.text(),
    readSecret,
    confirm,
    untilInterrupted() {
      if (!interrupted) {
        const controller = new AbortController();
        const stop = () => controller.abort();
        // once: a second Ctrl-C finds no handler and ends the process the default way.
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        interrupted = controller;
      }
      return interrupted.signal;
    },
  };
}

/** A question answered at the terminal: only "y" or "yes" is a yes. */
async function confirm(question: string): Promise<boolean> {
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** A line typed at the terminal with echo off (raw mode): backspace edits, Ctrl-C gives up. */
function readSecret(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let text = "";
    const finish = (): void => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          finish();
          resolve(text);
          return;
        }
        if (ch === "\u0003") {
          finish();
          reject(new CommandFailure("interrupted", EXIT.failed));
          return;
        }
        if (ch === "\u007f" || ch === "\b") text = text.slice(0, -1);
        else if (ch >= " ") text += ch;
      }
    };
    stdin.on("data", onData);
  });
}
