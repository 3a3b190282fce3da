/**
 * The thread sender authentication runs in (src/mail/sender-auth-thread.ts supervises it): many
 * messages at once, each through `verifySender`, whose DNS questions go back to the thread that
 * sent the message and are answered there, by its resolver and its cache.
 */
import type { AuthAnswer, AuthQuestion, AuthReply, AuthRequest } from "./sender-auth-thread.ts";
import { verifySender } from "./sender-auth.ts";

declare const self: Worker;

const questions = new Map<number, { resolve: (records: unknown) => void; reject: (e: Error) => void }>();
let lastQuestion = 0;

/** The resolver of one message: each question names the message, so its own resolver answers it. */
const resolverOf =
  (request: number) =>
  (name: string, rrtype: string): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const q = ++lastQuestion;
      questions.set(q, { resolve, reject });
      self.postMessage({ question: q, request, name, rrtype } satisfies AuthQuestion);
    });

self.onmessage = ({ data }: MessageEvent<AuthRequest | AuthAnswer>) => {
  if ("question" in data) {
    const waiting = questions.get(data.question);
    if (!waiting) return;
    questions.delete(data.question);
    if ("error" in data) waiting.reject(Object.assign(new Error(data.error.message), { code: data.error.code }));
    else waiting.resolve(data.records);
    return;
  }
  const { id, input, now, totalTimeoutMs } = data;
  // verifySender never throws: every failure is in its result.
  void verifySender(input, { resolver: resolverOf(id), clock: { now: () => now }, totalTimeoutMs }).then((result) =>
    self.postMessage({ id, result } satisfies AuthReply),
  );
};
