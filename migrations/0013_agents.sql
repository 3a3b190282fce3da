CREATE TABLE `agent_runtimes` (
	`id` text PRIMARY KEY NOT NULL,
	`state` text NOT NULL,
	`isolation` text NOT NULL,
	`tenant` text,
	`agent` text,
	`template` text,
	`template_version` integer,
	`user_config` text,
	`token_hash` text NOT NULL,
	`dir` text NOT NULL,
	`socket` text NOT NULL,
	`pid` integer,
	`cold` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	`ready_at` integer,
	`claimed_at` integer,
	`heartbeat_at` integer,
	`synced_at` integer,
	`stuck_at` integer,
	`deleted_at` integer,
	`destroying` integer DEFAULT false NOT NULL,
	`error` text
);
--> statement-breakpoint
CREATE INDEX `agent_runtimes_ready` ON `agent_runtimes` (`ready_at`) WHERE state = 'ready';--> statement-breakpoint
CREATE INDEX `agent_runtimes_state` ON `agent_runtimes` (`state`);--> statement-breakpoint
CREATE INDEX `agent_runtimes_tenant` ON `agent_runtimes` (`tenant`,`id`);--> statement-breakpoint
CREATE UNIQUE INDEX `agent_runtimes_claimed` ON `agent_runtimes` (`tenant`,`agent`) WHERE state = 'claimed';--> statement-breakpoint
CREATE TABLE `agent_tool_calls` (
	`id` text PRIMARY KEY NOT NULL,
	`runtime_id` text NOT NULL,
	`tenant` text NOT NULL,
	`event_id` text,
	`tool` text NOT NULL,
	`args` text NOT NULL,
	`state` text NOT NULL,
	`approval_id` text,
	`decision` text,
	`result` text,
	`error` text,
	`created_at` integer NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE INDEX `agent_tool_calls_runtime` ON `agent_tool_calls` (`runtime_id`,`id`);--> statement-breakpoint
CREATE INDEX `agent_tool_calls_event` ON `agent_tool_calls` (`event_id`,`id`) WHERE event_id IS NOT NULL;--> statement-breakpoint
CREATE TABLE `agent_tools` (
	`id` text PRIMARY KEY NOT NULL,
	`runtime_id` text NOT NULL,
	`tenant` text NOT NULL,
	`tool` text NOT NULL,
	`plugin` text NOT NULL,
	`provisioning` text NOT NULL,
	`state` text NOT NULL,
	`resource_id` text,
	`config` text NOT NULL,
	`secret_ref` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `agent_tools_runtime` ON `agent_tools` (`runtime_id`,`id`);--> statement-breakpoint
CREATE INDEX `agent_tools_resource` ON `agent_tools` (`plugin`,`resource_id`) WHERE state = 'active';--> statement-breakpoint
CREATE INDEX `agent_tools_unsettled` ON `agent_tools` (`state`) WHERE state IN ('creating', 'destroying');