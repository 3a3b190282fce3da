import { defineConfig } from "drizzle-kit";

// drizzle-kit only generates SQL here (`npm run db:generate`); the appliance applies the
// migrations itself, embedded in the binary (src/store/migrate.ts).
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/store/schema/index.ts",
  out: "./migrations",
});
