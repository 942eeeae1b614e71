import { and, eq, sql } from "drizzle-orm";
import type { z } from "zod";
import { subjects } from "../../contracts/streams";
import { AppError } from "../../core/errors";
import { pgConstraint, pgErrorCode } from "../../core/http/db-errors";
import { canonicalJson, newId, sha256Hex } from "../../core/ids";
import { provisioningTasks, subscriptions, tenantInstances } from "../../db/schema";
import type { Tx } from "../../db/types";
import {
  type CredentialRotationResponse,
  credentialRotationResponseSchema,
  type DeprovisionResponse,
  deprovisionResponseSchema,
  type FeatureMap,
  type FeatureUpdateResponse,
  featureUpdateResponseSchema,
} from "../routes/provisioning/schema";
import type { IfMatch } from "./concurrency";
import { mutate, type ServiceContext } from "./mutation";
import { normalizeFeatureMap, overridesFromCustomFeatures } from "./provisioning";
import { assertInstanceIfMatch, taskInFlight } from "./tenant-instances";

// Tareas sobre una instancia ya existente: baja (deprovision) y cambio de features.
// El correlation id de la petición es el de la tarea: repetir la misma petición con el mismo id
// devuelve la misma tarea (seed: "un correlationId hace de una petición repetida un no-op").

type TaskKind = "deprovision" | "update_features" | "rotate_credentials";

const TASK_SUBJECTS: Record<TaskKind, string> = {
  deprovision: subjects.deprovision,
  update_features: subjects.updateFeatures,
  rotate_credentials: subjects.rotateCredentials,
};

export interface TaskAccepted<T> {
  response: T;
  replayed: boolean;
}

interface Planned<T> {
  kind: TaskKind;
  payload: Record<string, unknown>;
  response: (taskId: string) => T;
  audit: { action: string; after: Record<string, unknown> };
}

/**
 * La misma petición (mismo X-Correlation-Id y mismo hash: instancia, tipo y cuerpo) repite su
 * tarea. Otra petición con el mismo id (p. ej. un id de incidente para varias instancias) es otra
 * tarea, no un 422: el id de correlación sirve para seguir el rastro, no como clave.
 */
async function byCorrelation<T>(
  ctx: ServiceContext,
  requestHash: string,
  schema: z.ZodType<T>,
): Promise<T | undefined> {
  const [task] = await ctx.db
    .select({ response: provisioningTasks.response })
    .from(provisioningTasks)
    .where(
      and(
        eq(provisioningTasks.correlationId, ctx.correlationId),
        eq(provisioningTasks.requestHash, requestHash),
      ),
    );
  if (!task) return undefined;
  const parsed = schema.safeParse(task.response);
  if (!parsed.success) {
    throw new AppError(
      "unprocessable",
      "This correlation id was already used for a different provisioning request",
      {
        fields: [{ path: "header.X-Correlation-Id", message: "Already used with another request" }],
      },
    );
  }
  return parsed.data;
}

async function lockInstance(tx: Tx, id: string) {
  const [row] = await tx
    .select()
    .from(tenantInstances)
    .where(eq(tenantInstances.id, id))
    .for("update");
  if (!row) throw new AppError("not_found", `Tenant instance ${id} does not exist`);
  return row;
}

type InstanceRow = Awaited<ReturnType<typeof lockInstance>>;

/**
 * Crea la tarea, su evento en el outbox (mismo formato que provision) y su auditoría en una
 * transacción con la instancia bloqueada: dos peticiones simultáneas no crean dos tareas.
 */
async function acceptTask<T>(
  ctx: ServiceContext,
  tenantInstanceId: string,
  request: Record<string, unknown>,
  schema: z.ZodType<T>,
  plan: (tx: Tx, instance: InstanceRow) => Promise<Planned<T> | { existing: T }>,
): Promise<TaskAccepted<T>> {
  const requestHash = await sha256Hex(canonicalJson({ tenantInstanceId, ...request }));
  const previous = await byCorrelation(ctx, requestHash, schema);
  if (previous) return { response: previous, replayed: true };
  try {
    return await mutate<TaskAccepted<T>>(ctx, async (tx) => {
      const instance = await lockInstance(tx, tenantInstanceId);
      const planned = await plan(tx, instance);
      if ("existing" in planned) {
        return { result: { response: planned.existing, replayed: true }, audit: [] };
      }
      const taskId = newId();
      const response = planned.response(taskId);
      const t = provisioningTasks;
      await tx.insert(provisioningTasks).values({
        id: taskId,
        tenantInstanceId,
        // El momento de aceptarla, con la instancia ya bloqueada (no el inicio de la transacción,
        // que pudo esperar ese bloqueo mientras se aceptaba otra cosa) y siempre después de la
        // tarea anterior de la instancia: el worker ordena los valores pedidos por este instante.
        createdAt: sql`greatest(clock_timestamp(), (select max(${t.createdAt}) + interval '1 millisecond' from ${t} where ${t.tenantInstanceId} = ${tenantInstanceId}))`,
        kind: planned.kind,
        status: "queued",
        correlationId: ctx.correlationId,
        requestHash,
        response,
        payload: planned.payload,
      });
      return {
        result: { response, replayed: false },
        audit: [
          {
            action: planned.audit.action,
            entityType: "tenant_instance",
            entityId: tenantInstanceId,
            before: { status: instance.status },
            after: { taskId, ...planned.audit.after },
          },
        ],
        events: [
          {
            subject: TASK_SUBJECTS[planned.kind],
            type: `provisioning.${planned.kind}_requested`,
            data: { taskId, tenantInstanceId, kind: planned.kind },
          },
        ],
      };
    });
  } catch (err) {
    // La misma petición (mismo correlation id) en paralelo: gana una y la otra devuelve su tarea.
    if (
      pgErrorCode(err) === "23505" &&
      pgConstraint(err) === "provisioning_tasks_correlation_request_uq"
    ) {
      const winner = await byCorrelation(ctx, requestHash, schema);
      if (winner) return { response: winner, replayed: true };
    }
    throw err;
  }
}

function statusConflict(instance: InstanceRow, what: string): AppError {
  return new AppError("conflict", `Tenant instance ${instance.id} is ${instance.status}; ${what}`, {
    extra: { currentStatus: instance.status },
  });
}

/** DELETE /api/provisioning/{id}: baja asíncrona; repetirla con la baja en curso da la misma tarea. */
export async function requestDeprovision(
  ctx: ServiceContext,
  tenantInstanceId: string,
  options: { purge: boolean },
  ifMatch: IfMatch,
): Promise<TaskAccepted<DeprovisionResponse>> {
  return acceptTask<DeprovisionResponse>(
    ctx,
    tenantInstanceId,
    { kind: "deprovision", purge: options.purge },
    deprovisionResponseSchema,
    async (tx, instance) => {
      const running = await taskInFlight(tx, tenantInstanceId, ["deprovision"]);
      if (running) {
        const existing = deprovisionResponseSchema.safeParse(running.response);
        // Devolver una baja en curso sin purge a quien pide purge ignoraría en silencio el borrado.
        // Al revés no: quien no pide purge (el valor por defecto) recibe la baja que ya corre.
        if (existing.success && options.purge && !existing.data.purge) {
          throw new AppError(
            "conflict",
            `Tenant instance ${tenantInstanceId} is already being deprovisioned with purge=${existing.data.purge}`,
            { extra: { taskId: existing.data.taskId, purge: existing.data.purge } },
          );
        }
        if (existing.success) return { existing: existing.data };
      }
      await assertInstanceIfMatch(tx, instance, ifMatch);
      if (instance.status === "decommissioned") {
        // Ya dada de baja: solo queda adelantar el borrado de datos que haría la retención
        // (p. ej. un pedido de borrado del cliente). Sin purge no hay nada que hacer.
        if (!options.purge) throw statusConflict(instance, "it is already decommissioned");
        if (instance.dataDroppedAt) {
          throw statusConflict(instance, "it is already decommissioned and its data was dropped");
        }
        return {
          kind: "deprovision",
          payload: { purge: true, dataOnly: true },
          response: (taskId) => ({
            tenantInstanceId,
            taskId,
            status: "deprovisioning",
            purge: true,
          }),
          audit: { action: "tenant_instance.purge_requested", after: { purge: true } },
        };
      }
      // Dar de baja a mitad del provisioning dejaría al worker reactivándola después.
      if (await taskInFlight(tx, tenantInstanceId, ["provision"])) {
        throw statusConflict(instance, "wait until its provisioning task finishes");
      }
      return {
        kind: "deprovision",
        payload: { purge: options.purge },
        response: (taskId) => ({
          tenantInstanceId,
          taskId,
          status: "deprovisioning",
          purge: options.purge,
        }),
        audit: { action: "tenant_instance.deprovision_requested", after: { purge: options.purge } },
      };
    },
  );
}

/** PUT /api/provisioning/{id}/features: el worker aplica los overrides en una transacción. */
export async function requestFeatureUpdate(
  ctx: ServiceContext,
  tenantInstanceId: string,
  input: FeatureMap,
  ifMatch?: IfMatch,
): Promise<TaskAccepted<FeatureUpdateResponse>> {
  const features = normalizeFeatureMap(input, "body");
  return acceptTask<FeatureUpdateResponse>(
    ctx,
    tenantInstanceId,
    { kind: "update_features", features },
    featureUpdateResponseSchema,
    async (tx, instance) => {
      await assertInstanceIfMatch(tx, instance, ifMatch);
      if (instance.status === "decommissioned") {
        throw statusConflict(instance, "its features cannot change");
      }
      if (await taskInFlight(tx, tenantInstanceId, ["deprovision"])) {
        throw statusConflict(instance, "it is being deprovisioned");
      }
      const [subscription] = await tx
        .select({ id: subscriptions.id })
        .from(subscriptions)
        .where(eq(subscriptions.tenantInstanceId, tenantInstanceId));
      if (!subscription) {
        throw new AppError(
          "conflict",
          `Tenant instance ${tenantInstanceId} has no subscription to override`,
        );
      }
      // Valida ya los códigos (422 que los nombra); el worker vuelve a escribirlos desde el payload.
      // Con las features bloqueadas hasta el commit: nadie borra una que la tarea nombra.
      await overridesFromCustomFeatures(tx, instance.productId, input, "body", {
        lockFeatures: true,
      });
      // Un cambio aceptado cambia la versión de la instancia: otro PUT (o PATCH) con el ETag de
      // antes da 412 en vez de pisar este sin saberlo.
      await tx
        .update(tenantInstances)
        .set({ rowVersion: sql`${tenantInstances.rowVersion} + 1`, updatedAt: sql`now()` })
        .where(eq(tenantInstances.id, tenantInstanceId));
      return {
        kind: "update_features",
        payload: { features },
        response: (taskId) => ({
          tenantInstanceId,
          taskId,
          kind: "update_features",
          status: "updating_features",
          features,
        }),
        audit: { action: "tenant_instance.features_update_requested", after: { features } },
      };
    },
  );
}

/**
 * POST /api/provisioning/{id}/rotate-credentials: contraseña nueva para el rol de la base propia de
 * una instancia Enterprise (p. ej. tras filtrarse su cadena). El worker fija la nueva, la pone al
 * rol y la guarda; las sesiones abiertas siguen, las nuevas necesitan la cadena nueva
 * (GET …/connection). Con una rotación en curso, la misma tarea.
 */
export async function requestCredentialRotation(
  ctx: ServiceContext,
  tenantInstanceId: string,
  ifMatch?: IfMatch,
): Promise<TaskAccepted<CredentialRotationResponse>> {
  return acceptTask<CredentialRotationResponse>(
    ctx,
    tenantInstanceId,
    { kind: "rotate_credentials" },
    credentialRotationResponseSchema,
    async (tx, instance) => {
      const running = await taskInFlight(tx, tenantInstanceId, ["rotate_credentials"]);
      if (running) {
        const existing = credentialRotationResponseSchema.safeParse(running.response);
        if (existing.success) return { existing: existing.data };
      }
      await assertInstanceIfMatch(tx, instance, ifMatch);
      if (instance.databaseTier !== "enterprise") {
        throw new AppError(
          "conflict",
          `Tenant instance ${tenantInstanceId} is Standard: it has no database role of its own`,
          { extra: { databaseTier: instance.databaseTier } },
        );
      }
      if (instance.status === "decommissioned") {
        throw statusConflict(instance, "its login is disabled");
      }
      // La cadena se guarda antes de crear el rol: solo una instancia ya provisionada (y sin otra
      // provisión en curso, p. ej. un replay) tiene un rol al que cambiarle la contraseña.
      const provisioned = instance.status === "active" || instance.status === "suspended";
      if (
        !provisioned ||
        !instance.connectionStringEncrypted ||
        (await taskInFlight(tx, tenantInstanceId, ["provision"]))
      ) {
        throw statusConflict(instance, "rotate its credentials once provisioning succeeds");
      }
      if (await taskInFlight(tx, tenantInstanceId, ["deprovision"])) {
        throw statusConflict(instance, "it is being deprovisioned");
      }
      return {
        kind: "rotate_credentials",
        payload: {},
        response: (taskId) => ({
          tenantInstanceId,
          taskId,
          kind: "rotate_credentials",
          status: "rotating_credentials",
        }),
        audit: { action: "tenant_instance.credentials_rotation_requested", after: {} },
      };
    },
  );
}
