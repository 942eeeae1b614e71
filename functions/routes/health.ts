import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { sql } from "drizzle-orm";
import { requestLogger } from "../../core/http/request-context";
import { checkReadiness } from "../../core/readiness";
import type { AdminEnv } from "../env";

const healthSchema = z
  .object({
    status: z.literal("ok").openapi({ description: "El proceso responde", example: "ok" }),
  })
  .openapi("Health");
const check = (what: string) =>
  z.enum(["ok", "failing"]).openapi({ description: `Estado de ${what}`, example: "ok" });
const readySchema = z
  .object({
    status: z.enum(["ready", "not_ready"]).openapi({
      description:
        "Listo para recibir tráfico: depende solo de la base (con NATS caído las escrituras siguen y sus eventos esperan en el outbox; `checks.broker` lo dice)",
      example: "ready",
    }),
    checks: z
      .object({ database: check("la base de datos"), broker: check("NATS JetStream") })
      .openapi({ description: "Resultado de cada dependencia" }),
  })
  .openapi("Readiness");

const healthz = createRoute({
  operationId: "healthz",
  method: "get",
  path: "/healthz",
  tags: ["health"],
  summary: "El proceso está vivo",
  responses: {
    200: { description: "Vivo", content: { "application/json": { schema: healthSchema } } },
  },
});

const readyz = createRoute({
  operationId: "readyz",
  method: "get",
  path: "/readyz",
  tags: ["health"],
  summary: "Base de datos alcanzable (y estado del broker, que no saca de servicio)",
  responses: {
    200: { description: "Listo", content: { "application/json": { schema: readySchema } } },
    503: { description: "No listo", content: { "application/json": { schema: readySchema } } },
  },
});

export function registerHealth(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(healthz, (c) => c.json({ status: "ok" as const }, 200));
  app.openapi(readyz, async (c) => {
    const readiness = await checkReadiness({
      database: () => c.var.deps.db.execute(sql`select 1`),
      broker: () => c.var.deps.bus.ping(),
      brokerRequired: false,
      onDatabaseError: (err) => requestLogger(c).warn({ err }, "readiness: database check failed"),
    });
    return c.json(readiness, readiness.status === "ready" ? 200 : 503);
  });
}
