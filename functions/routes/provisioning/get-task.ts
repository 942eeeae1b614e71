import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { asc, eq } from "drizzle-orm";
import { AppError } from "../../../core/errors";
import { provisioningTaskSteps, provisioningTasks } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, contentEtagHeader, readErrorResponses, uuidParam } from "../../openapi";
import { contentEtagFor } from "../../services/concurrency";
import { taskSchema } from "./schema";
import { toTaskView } from "./task-view";

const route = createRoute({
  operationId: "getProvisioningTask",
  method: "get",
  path: "/api/provisioning/tasks/{taskId}",
  tags: ["provisioning"],
  summary: "Estado de una tarea de provisioning y sus pasos",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ taskId: uuidParam("taskId", "Id de la tarea") }) },
  responses: {
    200: {
      description: "La tarea",
      headers: contentEtagHeader,
      content: { "application/json": { schema: taskSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerGetTask(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { taskId } = c.req.valid("param");
    const db = c.var.deps.db;
    const [task] = await db
      .select()
      .from(provisioningTasks)
      .where(eq(provisioningTasks.id, taskId));
    if (!task) throw new AppError("not_found", `Task ${taskId} does not exist`);
    const steps = await db
      .select()
      .from(provisioningTaskSteps)
      .where(eq(provisioningTaskSteps.taskId, taskId))
      .orderBy(asc(provisioningTaskSteps.position));
    const view = toTaskView(task, steps);
    c.header("etag", await contentEtagFor(view));
    return c.json(view, 200);
  });
}
