/**
 * The thread sender authentication runs in (src/mail/sender-auth-thread.ts supervises it): many
 * messages at once, each through `verifySender`, whose DNS questions go back to the thread that
 * sent the message and are answered there, by its resolver and its cache.
 */
import { postBatcher } from "../core/post-batch.ts";
import type { AuthAnswer, AuthQuestion, AuthReply, AuthRequest } from "./sender-auth-thread.ts";
import { verifySender } from "./sender-auth.ts";

declare const self: Worker;

const questions = new Map<number, { resolve: (records: unknown) => void; reject: (e: Error) => void }>();
let lastQuestion = 0;
/** Questions and results go back gathered per turn (src/core/post-batch.ts). */
const post = postBatcher<AuthQuestion | AuthReply>((items) => self.postMessage(items));

/** The resolver of one message: each question names the message, so its own resolver answers it. */
const resolverOf =
  (request: number) =>
  (name: string, rrtype: string): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const q = ++lastQuestion;
      questions.set(q, { resolve, reject });
      post({ question: q, request, name, rrtype });
    });

function handle(item: AuthRequest | AuthAnswer): void {
  if ("question" in item) {
    const waiting = questions.get(item.question);
    if (!waiting) return;
    questions.delete(item.question);
    if ("error" in item) waiting.reject(Object.assign(new Error(item.error.message), { code: item.error.code }));
    else waiting.resolve(item.records);
    return;
  }
  const { id, input, now, totalTimeoutMs } = item;
  // verifySender never throws: every failure is in its result.
  void verifySender(input, { resolver: resolverOf(id), clock: { now: () => now }, totalTimeoutMs }).then((result) =>
    post({ id, result }),
  );
}

self.onmessage = ({ data }: MessageEvent<(AuthRequest | AuthAnswer)[]>) => {
  for (const item of data) handle(item);
};
