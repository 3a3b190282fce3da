import { type AnyElysia, Elysia } from "elysia";

interface Documentation {
  info: { title: string; version: string; description?: string };
  components?: { securitySchemes?: Record<string, unknown>; schemas?: Record<string, unknown> };
  security?: Record<string, string[]>[];
}

const OPENAPI_VERSION = "3.1.2";

/**
 * `GET /openapi.json`: the API's OpenAPI document, made from the routes the server has (their
 * TypeBox schemas) when first asked for, and kept while the routes stay the same. What
 * @elysiajs/openapi's plugin does with `provider: null`, but its converter is loaded on the first
 * request: the plugin's module (260 KiB with its UI renderers) was part of every idle appliance
 * (docs/performance.md#idle-memory).
 */
export function openapiDocument(documentation: Documentation) {
  let cached: { routes: number; doc: unknown } | null = null;
  const app = new Elysia({ name: "agentowl-openapi" });
  return app.get(
    "/openapi.json",
    async () => {
      const routes = app.routes.length;
      if (cached?.routes === routes) return cached.doc;
      const { toOpenAPISchema } = await import("@elysiajs/openapi/openapi");
      const { paths, components } = toOpenAPISchema(app as AnyElysia, undefined, undefined, undefined, OPENAPI_VERSION);
      const doc = {
        ...documentation,
        openapi: OPENAPI_VERSION,
        paths,
        components: {
          ...documentation.components,
          schemas: { ...components.schemas, ...documentation.components?.schemas },
        },
      };
      cached = { routes, doc };
      return doc;
    },
    { detail: { hide: true } },
  );
}
