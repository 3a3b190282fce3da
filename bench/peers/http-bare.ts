/**
 * The HTTP benchmark's reference: a bare Bun.serve that reads the body and answers 202 with an
 * id, doing no other work. `bun http-bare.ts PORT`.
 */
const port = Number(process.argv[2]);
let n = 0;
Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(req) {
    await req.arrayBuffer();
    return Response.json({ id: `evt_${++n}` }, { status: 202 });
  },
});
