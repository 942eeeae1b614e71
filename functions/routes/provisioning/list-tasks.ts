import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq, inArray } from "drizzle-orm";
import { provisioningTaskSteps, provisioningTasks } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, listErrorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { taskSchema } from "./schema";
import { toTaskView } from "./task-view";

const route = createRoute({
  operationId: "listProvisioningTasks",
  method: "get",
  path: "/api/provisioning/tasks",
  tags: ["provisioning"],
  summary: "Lista tareas de provisioning con sus pasos (p. ej. las fallidas de una instancia)",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      tenantInstanceId: z.uuid().optional().openapi({
        description: "Filtra por instancia",
        example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
      }),
      status: taskSchema.shape.status
        .optional()
        .openapi({ description: "Filtra por estado", example: "dead_lettered" }),
      kind: taskSchema.shape.kind
        .optional()
        .openapi({ description: "Filtra por tipo", example: "provision" }),
    }),
  },
  responses: {
    200: {
      description: "Una página, de la más antigua a la más nueva",
      content: {
        "application/json": { schema: pageSchema(taskSchema, "ProvisioningTaskPage") },
      },
    },
    ...listErrorResponses,
  },
});

export function registerListTasks(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const db = c.var.deps.db;
    const page = keyset(provisioningTasks.createdAt, provisioningTasks.id, q.cursor);
    const rows = await db
      .select()
      .from(provisioningTasks)
      .where(
        and(
          q.tenantInstanceId
            ? eq(provisioningTasks.tenantInstanceId, q.tenantInstanceId)
            : undefined,
          q.status ? eq(provisioningTasks.status, q.status) : undefined,
          q.kind ? eq(provisioningTasks.kind, q.kind) : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    // Los pasos de toda la página en una consulta (no una por tarea).
    const ids = rows.slice(0, q.limit).map((t) => t.id);
    const steps =
      ids.length === 0
        ? []
        : await db
            .select()
            .from(provisioningTaskSteps)
            .where(inArray(provisioningTaskSteps.taskId, ids))
            .orderBy(asc(provisioningTaskSteps.taskId), asc(provisioningTaskSteps.position));
    const stepsByTask = new Map<string, typeof steps>();
    for (const step of steps) {
      const list = stepsByTask.get(step.taskId);
      if (list) list.push(step);
      else stepsByTask.set(step.taskId, [step]);
    }
    return c.json(
      toPage(rows, q.limit, (t) => toTaskView(t, stepsByTask.get(t.id) ?? [])),
      200,
    );
  });
}
