/**
 * The sender-authentication worker (src/mail/sender-auth-worker.ts) with two faults on demand, for
 * src/mail/sender-auth-thread.test.ts: a message from hang@faulty.test keeps the thread busy for
 * ever, one from crash@faulty.test throws out of the thread. Every other message is verified.
 */
import "../../src/mail/sender-auth-worker.ts";
import type { AuthAnswer, AuthRequest } from "../../src/mail/sender-auth-thread.ts";

declare const self: Worker;

const verify = self.onmessage!;
self.onmessage = (event: MessageEvent<(AuthRequest | AuthAnswer)[]>) => {
  for (const item of event.data) {
    const from = "input" in item ? item.input.mailFrom : "";
    if (from === "hang@faulty.test") for (;;);
    if (from === "crash@faulty.test") throw new RangeError("the faulty worker's crash");
  }
  verify.call(self, event);
};
