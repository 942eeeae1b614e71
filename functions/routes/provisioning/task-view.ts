import type { z } from "@hono/zod-openapi";
import type { provisioningTaskSteps, provisioningTasks } from "../../../db/schema";
import type { taskSchema } from "./schema";

type TaskRow = typeof provisioningTasks.$inferSelect;
type StepRow = typeof provisioningTaskSteps.$inferSelect;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** Vista pública de una tarea con sus pasos (en orden), la misma en el GET y en la lista. */
export function toTaskView(task: TaskRow, steps: StepRow[]): z.infer<typeof taskSchema> {
  return {
    taskId: task.id,
    tenantInstanceId: task.tenantInstanceId,
    kind: task.kind,
    status: task.status,
    attempts: task.attempts,
    lastError: task.lastError,
    correlationId: task.correlationId,
    steps: steps.map((s) => ({
      name: s.name,
      status: s.status,
      attempts: s.attempts,
      startedAt: s.startedAt.toISOString(),
      finishedAt: iso(s.finishedAt),
      error: s.error,
    })),
    createdAt: task.createdAt.toISOString(),
    updatedAt: task.updatedAt.toISOString(),
    startedAt: iso(task.startedAt),
    finishedAt: iso(task.finishedAt),
  };
}
