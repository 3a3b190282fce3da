import { defineConfig } from "drizzle-kit";

// The PostgreSQL twin of drizzle.config.ts: drizzle-kit only generates SQL (`npm run db:generate`),
// embedded in the binary and applied by the PostgreSQL driver itself (src/store/postgres/migrate.ts).
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/store/postgres/schema/index.ts",
  out: "./migrations-pg",
});
