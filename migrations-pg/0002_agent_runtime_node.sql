-- Several nodes on one database (docs/agents.md#several-nodes): the node whose process runs a
-- runtime; only that node claims, checks and destroys it.
ALTER TABLE "agent_runtimes" ADD COLUMN "node" text;