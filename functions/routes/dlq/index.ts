import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq, isNotNull, isNull } from "drizzle-orm";
import { dlqEntries } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard, writeGuard } from "../../middleware/guards";
import { TENANT_READ, TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  contentEtagHeader,
  errorResponses,
  listErrorResponses,
  pageSchema,
  paginationQuery,
  readErrorResponses,
  uuidParam,
} from "../../openapi";
import { contentEtagFor, notFound } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { replayDeadLetter, toDlqEntry } from "../../services/dlq";
import { keyset, toPage } from "../../services/pagination";

const dlqEntrySchema = z
  .object({
    id: z.uuid().openapi({
      description: "Id de la entrada",
      example: "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    }),
    domain: z.string().openapi({ description: "Dominio del worker", example: "provisioning" }),
    stream: z.string().openapi({ description: "Stream de JetStream", example: "PROVISIONING" }),
    streamSequence: z
      .number()
      .int()
      .openapi({ description: "Secuencia original en el stream", example: 42 }),
    subject: z
      .string()
      .openapi({ description: "Subject original", example: "provisioning.tasks.provision" }),
    eventId: z.uuid().nullable().openapi({
      description: "Id del evento original",
      example: "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    }),
    eventType: z
      .string()
      .nullable()
      .openapi({ description: "Tipo del evento", example: "provisioning.requested" }),
    correlationId: z
      .string()
      .nullable()
      .openapi({ description: "Correlación de la petición", example: "pedido-0001" }),
    error: z
      .string()
      .openapi({ description: "Último error", example: "shared database unreachable" }),
    errorKind: z
      .enum(["transient", "permanent"])
      .openapi({ description: "transient: agotó reintentos", example: "transient" }),
    deliveries: z.number().int().openapi({ description: "Entregas hechas", example: 5 }),
    payload: z.unknown().openapi({
      description: "Mensaje original (sobre del evento o texto crudo)",
      example: { type: "provisioning.requested" },
    }),
    replayCount: z.number().int().openapi({ description: "Veces que se reprocesó", example: 0 }),
    replayedAt: z.string().nullable().openapi({ description: "Último replay", example: null }),
    createdAt: z
      .string()
      .openapi({ description: "Cuándo murió", example: "2026-01-24T13:20:07.500Z" }),
  })
  .openapi("DlqEntry");

const list = createRoute({
  operationId: "listDeadLetters",
  method: "get",
  path: "/api/dlq",
  tags: ["dlq"],
  summary: "Mensajes en la DLQ",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      domain: z
        .enum(["provisioning", "notifications", "billing", "integration"])
        .optional()
        .openapi({ description: "Filtra por dominio", example: "provisioning" }),
      replayed: z
        .enum(["true", "false"])
        .optional()
        .openapi({ description: "true: ya reprocesados; false: pendientes", example: "false" }),
      correlationId: z
        .string()
        .min(1)
        .max(128)
        .optional()
        .openapi({ description: "Filtra por correlación", example: "pedido-0001" }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(dlqEntrySchema, "DlqEntryPage") } },
    },
    ...listErrorResponses,
  },
});

const get = createRoute({
  operationId: "getDeadLetter",
  method: "get",
  path: "/api/dlq/{id}",
  tags: ["dlq"],
  summary: "Un mensaje de la DLQ",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ id: uuidParam("id", "Id de la entrada") }) },
  responses: {
    200: {
      description: "La entrada",
      headers: contentEtagHeader,
      content: { "application/json": { schema: dlqEntrySchema } },
    },
    ...readErrorResponses,
  },
});

const replay = createRoute({
  operationId: "replayDeadLetter",
  method: "post",
  path: "/api/dlq/{id}/replay",
  tags: ["dlq"],
  summary: "Reprocesa un mensaje: misma correlación, presupuesto de entregas nuevo",
  description:
    "Cada entrada se reprocesa una sola vez, en cualquier dominio: un segundo replay, aunque sea " +
    "simultáneo, responde 409 sin volver a publicar (si el mensaje vuelve a morir, llega como " +
    "entrada nueva). Una tarea de provisioning además solo se reprocesa si sigue muerta (409 si " +
    "terminó) y nunca sobre una instancia dada de baja, salvo su propia baja (409).",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: z.object({ id: uuidParam("id", "Id de la entrada") }) },
  responses: {
    202: {
      description: "Republicado",
      content: { "application/json": { schema: dlqEntrySchema } },
    },
    ...errorResponses,
  },
});

export function registerDlq(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(list, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(dlqEntries.createdAt, dlqEntries.id, q.cursor);
    const rows = await c.var.deps.db
      .select()
      .from(dlqEntries)
      .where(
        and(
          q.domain ? eq(dlqEntries.domain, q.domain) : undefined,
          q.replayed === "true" ? isNotNull(dlqEntries.replayedAt) : undefined,
          q.replayed === "false" ? isNull(dlqEntries.replayedAt) : undefined,
          q.correlationId ? eq(dlqEntries.correlationId, q.correlationId) : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(toPage(rows, q.limit, toDlqEntry), 200);
  });
  app.openapi(get, async (c) => {
    const { id } = c.req.valid("param");
    const [row] = await c.var.deps.db.select().from(dlqEntries).where(eq(dlqEntries.id, id));
    if (!row) throw notFound("DLQ entry", id);
    const entry = toDlqEntry(row);
    c.header("etag", await contentEtagFor(entry));
    return c.json(entry, 200);
  });
  app.openapi(replay, async (c) => {
    const entry = await replayDeadLetter(serviceContext(c), c.req.valid("param").id);
    return c.json(toDlqEntry(entry), 202);
  });
}
