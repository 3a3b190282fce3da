-- Several nodes on one database (docs/agents.md#several-nodes): the node whose process runs a
-- runtime; only that node claims, checks and destroys it. Null on SQLite (one node).
ALTER TABLE `agent_runtimes` ADD `node` text;