CREATE TABLE "audit_checkpoints" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"seq" bigint NOT NULL,
	"pruned_through" bigint NOT NULL,
	"line" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "blob_chunks" (
	"sha256" text NOT NULL,
	"idx" integer NOT NULL,
	"bytes" "bytea" NOT NULL,
	CONSTRAINT "blob_chunks_sha256_idx_pk" PRIMARY KEY("sha256","idx")
);
--> statement-breakpoint
CREATE TABLE "blobs" (
	"sha256" text PRIMARY KEY NOT NULL,
	"size" bigint NOT NULL,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "endpoint_slots" (
	"endpoint" text NOT NULL,
	"slot" integer NOT NULL,
	"holder" text,
	"expires_at" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "endpoint_slots_endpoint_slot_pk" PRIMARY KEY("endpoint","slot")
);
--> statement-breakpoint
CREATE TABLE "spool_chunks" (
	"segment" text NOT NULL,
	"offset" bigint NOT NULL,
	"idx" integer NOT NULL,
	"bytes" "bytea" NOT NULL,
	"created_at" bigint NOT NULL,
	CONSTRAINT "spool_chunks_segment_offset_idx_pk" PRIMARY KEY("segment","offset","idx")
);
--> statement-breakpoint
CREATE INDEX "spool_chunks_created" ON "spool_chunks" USING btree ("created_at");