CREATE TABLE "approvals" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant" text NOT NULL,
	"event_id" text,
	"action" jsonb NOT NULL,
	"policy" jsonb NOT NULL,
	"state" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL,
	"on_expiry" text NOT NULL,
	"decided_by" text,
	"decided_at" bigint,
	"reason" text
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"at" bigint NOT NULL,
	"actor" text NOT NULL,
	"tenant" text,
	"action" text NOT NULL,
	"target" text,
	"decision" text,
	"details" text NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "resource_history" (
	"tenant" text NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"resource_version" bigint NOT NULL,
	"op" text NOT NULL,
	"spec" jsonb NOT NULL,
	"actor" text NOT NULL,
	"changed_at" bigint NOT NULL,
	CONSTRAINT "resource_history_tenant_kind_name_resource_version_pk" PRIMARY KEY("tenant","kind","name","resource_version")
);
--> statement-breakpoint
CREATE TABLE "resources" (
	"tenant" text NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"spec" jsonb NOT NULL,
	"resource_version" bigint NOT NULL,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL,
	CONSTRAINT "resources_tenant_kind_name_pk" PRIMARY KEY("tenant","kind","name")
);
--> statement-breakpoint
CREATE TABLE "singleton_leases" (
	"name" text PRIMARY KEY NOT NULL,
	"holder" text NOT NULL,
	"expires_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"hash" text NOT NULL,
	"scopes" jsonb NOT NULL,
	"created_at" bigint NOT NULL,
	"created_by" text NOT NULL,
	"expires_at" bigint,
	"revoked_at" bigint,
	CONSTRAINT "tokens_hash_unique" UNIQUE("hash")
);
--> statement-breakpoint
CREATE TABLE "deliveries" (
	"id" text PRIMARY KEY NOT NULL,
	"event_id" text NOT NULL,
	"tenant" text NOT NULL,
	"endpoint" text NOT NULL,
	"state" text NOT NULL,
	"attempts" bigint DEFAULT 0 NOT NULL,
	"last_status" bigint,
	"last_error" text,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL,
	"route" text,
	"decision" jsonb,
	"approval_id" text,
	"first_attempt_at" bigint,
	"replay_of" text,
	"requested_by" text,
	"attempt_base" bigint DEFAULT 0 NOT NULL,
	"trace" jsonb DEFAULT '[]'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "delivery_attempts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"delivery_id" text NOT NULL,
	"attempt" bigint NOT NULL,
	"started_at" bigint NOT NULL,
	"latency_ms" bigint NOT NULL,
	"status" bigint,
	"error_class" text,
	"error" text,
	"excerpt" text
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant" text NOT NULL,
	"type" text NOT NULL,
	"channel" text NOT NULL,
	"agent" text,
	"binding" text,
	"idempotency_key" text,
	"received_at" bigint NOT NULL,
	"envelope" jsonb NOT NULL,
	"trace" jsonb NOT NULL,
	"routing" jsonb
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"tenant" text,
	"payload" jsonb NOT NULL,
	"idempotency_key" text,
	"state" text NOT NULL,
	"attempt" bigint DEFAULT 0 NOT NULL,
	"max_attempts" bigint NOT NULL,
	"run_at" bigint NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint,
	"leased_at" bigint,
	"lease_expires_at" bigint,
	"lease_owner" text,
	"finished_at" bigint,
	"last_error" text,
	"dead_reason" text
);
--> statement-breakpoint
CREATE TABLE "kv" (
	"key" text PRIMARY KEY NOT NULL,
	"value" text NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "outbox" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"id" text NOT NULL,
	"topic" text NOT NULL,
	"tenant" text,
	"payload" jsonb NOT NULL,
	"created_at" bigint NOT NULL,
	CONSTRAINT "outbox_id_unique" UNIQUE("id")
);
--> statement-breakpoint
CREATE TABLE "outbox_cursors" (
	"subscriber" text PRIMARY KEY NOT NULL,
	"position" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "secrets" (
	"tenant" text NOT NULL,
	"name" text NOT NULL,
	"version" bigint NOT NULL,
	"master_key_id" text NOT NULL,
	"wrapped_key" "bytea" NOT NULL,
	"sealed_value" "bytea" NOT NULL,
	"created_at" bigint NOT NULL,
	"created_by" text NOT NULL,
	"expires_at" bigint,
	"rotation_period_ms" bigint,
	"format" text,
	CONSTRAINT "secrets_tenant_name_version_pk" PRIMARY KEY("tenant","name","version")
);
--> statement-breakpoint
CREATE TABLE "mail_messages" (
	"id" text PRIMARY KEY NOT NULL,
	"received_at" bigint NOT NULL,
	"remote_ip" text NOT NULL,
	"helo" text NOT NULL,
	"mail_from" text NOT NULL,
	"recipients" jsonb NOT NULL,
	"tls" boolean NOT NULL,
	"size" bigint NOT NULL,
	"spool_segment" text NOT NULL,
	"spool_offset" bigint NOT NULL,
	"spool_length" bigint NOT NULL,
	"trace" jsonb NOT NULL,
	"state" text NOT NULL,
	"events" jsonb,
	"error" text,
	"processed_at" bigint
);
--> statement-breakpoint
CREATE TABLE "console_sessions" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"csrf" text NOT NULL,
	"created_at" bigint NOT NULL,
	"last_seen_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL,
	"revoked_at" bigint
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" text PRIMARY KEY NOT NULL,
	"username" text NOT NULL,
	"password_hash" text NOT NULL,
	"role" text NOT NULL,
	"tenants" jsonb NOT NULL,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL,
	"failed_count" bigint DEFAULT 0 NOT NULL,
	"locked_until" bigint,
	"lock_level" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "users_username_unique" UNIQUE("username")
);
--> statement-breakpoint
CREATE TABLE "agent_runtimes" (
	"id" text PRIMARY KEY NOT NULL,
	"state" text NOT NULL,
	"isolation" text NOT NULL,
	"tenant" text,
	"agent" text,
	"template" text,
	"template_version" bigint,
	"user_config" jsonb,
	"token_hash" text NOT NULL,
	"dir" text NOT NULL,
	"socket" text NOT NULL,
	"pid" bigint,
	"cold" boolean DEFAULT false NOT NULL,
	"created_at" bigint NOT NULL,
	"ready_at" bigint,
	"claimed_at" bigint,
	"heartbeat_at" bigint,
	"synced_at" bigint,
	"stuck_at" bigint,
	"deleted_at" bigint,
	"destroying" boolean DEFAULT false NOT NULL,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "agent_tool_calls" (
	"id" text PRIMARY KEY NOT NULL,
	"runtime_id" text NOT NULL,
	"tenant" text NOT NULL,
	"event_id" text,
	"tool" text NOT NULL,
	"args" jsonb NOT NULL,
	"state" text NOT NULL,
	"approval_id" text,
	"decision" jsonb,
	"result" jsonb,
	"error" text,
	"created_at" bigint NOT NULL,
	"finished_at" bigint
);
--> statement-breakpoint
CREATE TABLE "agent_tools" (
	"id" text PRIMARY KEY NOT NULL,
	"runtime_id" text NOT NULL,
	"tenant" text NOT NULL,
	"tool" text NOT NULL,
	"plugin" text NOT NULL,
	"provisioning" text NOT NULL,
	"state" text NOT NULL,
	"resource_id" text,
	"config" jsonb NOT NULL,
	"secret_ref" text,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
ALTER TABLE "deliveries" ADD CONSTRAINT "deliveries_event_id_events_id_fk" FOREIGN KEY ("event_id") REFERENCES "public"."events"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "delivery_attempts" ADD CONSTRAINT "delivery_attempts_delivery_id_deliveries_id_fk" FOREIGN KEY ("delivery_id") REFERENCES "public"."deliveries"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "console_sessions" ADD CONSTRAINT "console_sessions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "approvals_tenant" ON "approvals" USING btree ("tenant","id");--> statement-breakpoint
CREATE INDEX "approvals_pending" ON "approvals" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "audit_tenant" ON "audit_log" USING btree ("tenant","seq");--> statement-breakpoint
CREATE INDEX "audit_action" ON "audit_log" USING btree ("action","seq");--> statement-breakpoint
CREATE INDEX "resources_kind" ON "resources" USING btree ("kind","name");--> statement-breakpoint
CREATE INDEX "tokens_created" ON "tokens" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "deliveries_tenant" ON "deliveries" USING btree ("tenant","id");--> statement-breakpoint
CREATE INDEX "deliveries_event" ON "deliveries" USING btree ("event_id");--> statement-breakpoint
CREATE UNIQUE INDEX "deliveries_event_endpoint" ON "deliveries" USING btree ("event_id","endpoint") WHERE replay_of IS NULL;--> statement-breakpoint
CREATE INDEX "deliveries_state" ON "deliveries" USING btree ("state","id");--> statement-breakpoint
CREATE INDEX "deliveries_approval" ON "deliveries" USING btree ("approval_id");--> statement-breakpoint
CREATE INDEX "deliveries_state_updated" ON "deliveries" USING btree ("state","updated_at","tenant");--> statement-breakpoint
CREATE INDEX "delivery_attempts_delivery" ON "delivery_attempts" USING btree ("delivery_id","attempt");--> statement-breakpoint
CREATE INDEX "events_tenant" ON "events" USING btree ("tenant","id");--> statement-breakpoint
CREATE INDEX "events_type" ON "events" USING btree ("type","id");--> statement-breakpoint
CREATE INDEX "events_received" ON "events" USING btree ("received_at","tenant");--> statement-breakpoint
CREATE UNIQUE INDEX "events_idempotency" ON "events" USING btree ("tenant","binding","idempotency_key") WHERE idempotency_key IS NOT NULL;--> statement-breakpoint
CREATE INDEX "jobs_ready" ON "jobs" USING btree ("run_at","id") WHERE state = 'available';--> statement-breakpoint
CREATE INDEX "jobs_leased" ON "jobs" USING btree ("lease_expires_at") WHERE state = 'leased';--> statement-breakpoint
CREATE INDEX "jobs_finished" ON "jobs" USING btree ("state","finished_at") WHERE state IN ('done', 'dead');--> statement-breakpoint
CREATE UNIQUE INDEX "jobs_idempotency" ON "jobs" USING btree ("kind","idempotency_key") WHERE idempotency_key IS NOT NULL;--> statement-breakpoint
CREATE INDEX "outbox_created" ON "outbox" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "mail_messages_received" ON "mail_messages" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "console_sessions_user" ON "console_sessions" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "console_sessions_expires" ON "console_sessions" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "agent_runtimes_ready" ON "agent_runtimes" USING btree ("ready_at") WHERE state = 'ready';--> statement-breakpoint
CREATE INDEX "agent_runtimes_state" ON "agent_runtimes" USING btree ("state");--> statement-breakpoint
CREATE INDEX "agent_runtimes_tenant" ON "agent_runtimes" USING btree ("tenant","id");--> statement-breakpoint
CREATE UNIQUE INDEX "agent_runtimes_claimed" ON "agent_runtimes" USING btree ("tenant","agent") WHERE state = 'claimed';--> statement-breakpoint
CREATE INDEX "agent_tool_calls_runtime" ON "agent_tool_calls" USING btree ("runtime_id","id");--> statement-breakpoint
CREATE INDEX "agent_tool_calls_event" ON "agent_tool_calls" USING btree ("event_id","id") WHERE event_id IS NOT NULL;--> statement-breakpoint
CREATE INDEX "agent_tools_runtime" ON "agent_tools" USING btree ("runtime_id","id");--> statement-breakpoint
CREATE INDEX "agent_tools_resource" ON "agent_tools" USING btree ("plugin","resource_id") WHERE state = 'active';--> statement-breakpoint
CREATE INDEX "agent_tools_unsettled" ON "agent_tools" USING btree ("state") WHERE state IN ('creating', 'destroying');