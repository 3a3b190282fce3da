/**
 * The agents bench's API client (bench/agents.ts), in a process of its own as a real client is:
 * the appliance's event loop then carries only the server's side of a claim (and the refill it
 * starts once it answered), not the client's parsing too. Takes `{url, token, template, agent}`
 * over IPC, POSTs the claim, answers `{ms, id, cold}` timed from before the request to the body read.
 */
process.on("message", async (m: { url: string; token: string; template: string; agent: string }) => {
  const t0 = performance.now();
  try {
    const r = await fetch(`${m.url}/v1/tenants/beta/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${m.token}`, "content-type": "application/json" },
      body: JSON.stringify({ template: m.template, agent: m.agent }),
    });
    const text = await r.text();
    const ms = performance.now() - t0;
    if (r.status >= 300) process.send?.({ error: `POST claim: ${r.status} ${text}` });
    else {
      const { id, cold } = JSON.parse(text) as { id: string; cold: boolean };
      process.send?.({ ms, id, cold });
    }
  } catch (e) {
    process.send?.({ error: String(e) });
  }
});
process.send?.({ ready: true });
