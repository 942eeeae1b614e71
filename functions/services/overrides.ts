import { and, eq } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import {
  features,
  productLimits,
  subscriptionFeatureOverrides,
  subscriptions,
} from "../../db/schema";
import type { Executor } from "../../db/types";
import type { CreateOverrideInput, OverrideRow } from "../routes/subscriptions/schema";
import { assertVersion, type IfMatch, notFound } from "./concurrency";
import { entitlementsChanged } from "./entitlement-events";
import { domainEvent, mutate, type ServiceContext } from "./mutation";
import { assertInstanceLive, taskInFlight } from "./tenant-instances";

export async function subscriptionHead(db: Executor, id: string) {
  const [row] = await db
    .select({
      id: subscriptions.id,
      productId: subscriptions.productId,
      tenantInstanceId: subscriptions.tenantInstanceId,
    })
    .from(subscriptions)
    .where(eq(subscriptions.id, id));
  return row;
}

function describe(input: CreateOverrideInput): { field: string; name: string } {
  return "featureCode" in input
    ? { field: "featureCode", name: input.featureCode }
    : { field: "limitName", name: input.limitName };
}

function duplicate(subscriptionId: string, input: CreateOverrideInput, cause?: unknown) {
  const { field, name } = describe(input);
  return new AppError(
    "conflict",
    `Subscription ${subscriptionId} already has an override for ${name}; delete it first`,
    { cause, fields: [{ path: `body.${field}`, message: "Already overridden" }] },
  );
}

/** 409 con la tarea mientras un PUT de features de la instancia espera al worker. */
async function refuseWhileFeaturesPending(
  tx: Executor,
  tenantInstanceId: string,
  action: string,
): Promise<void> {
  const pending = await taskInFlight(tx, tenantInstanceId, ["update_features"]);
  if (pending) {
    throw new AppError(
      "conflict",
      `A feature update of tenant instance ${tenantInstanceId} is still being applied (task ${pending.id}); ${action} once it finishes`,
      { extra: { taskId: pending.id } },
    );
  }
}

export async function addOverride(
  ctx: ServiceContext,
  subscriptionId: string,
  input: CreateOverrideInput,
): Promise<OverrideRow> {
  try {
    return await mutate(ctx, async (tx) => {
      const sub = await subscriptionHead(tx, subscriptionId);
      if (!sub) throw notFound("Subscription", subscriptionId);
      await assertInstanceLive(tx, sub.tenantInstanceId, "its overrides cannot change");
      // Un PUT de features aceptado antes se aplicaría después y pisaría este override, más nuevo
      // (como al borrar uno): se pide esperar a que el worker termine esa tarea.
      await refuseWhileFeaturesPending(tx, sub.tenantInstanceId, "add the override");
      const { field, name } = describe(input);
      // La feature o el límite deben ser del producto de la suscripción (la FK también lo exige).
      const known =
        "featureCode" in input
          ? await tx
              .select({ code: features.code })
              .from(features)
              .where(and(eq(features.productId, sub.productId), eq(features.code, name)))
          : await tx
              .select({ name: productLimits.name })
              .from(productLimits)
              .where(and(eq(productLimits.productId, sub.productId), eq(productLimits.name, name)));
      if (known.length === 0) {
        const what = "featureCode" in input ? "feature code" : "limit name";
        throw new AppError("unprocessable", `Unknown ${what} for this product: ${name}`, {
          fields: [{ path: `body.${field}`, message: `Unknown ${what} ${name}` }],
          extra: { unknownCodes: [name] },
        });
      }
      const [existing] = await tx
        .select({ id: subscriptionFeatureOverrides.id })
        .from(subscriptionFeatureOverrides)
        .where(
          and(
            eq(subscriptionFeatureOverrides.subscriptionId, subscriptionId),
            "featureCode" in input
              ? eq(subscriptionFeatureOverrides.featureCode, name)
              : eq(subscriptionFeatureOverrides.limitName, name),
          ),
        );
      if (existing) throw duplicate(subscriptionId, input);
      const [row] = await tx
        .insert(subscriptionFeatureOverrides)
        .values({
          id: newId(),
          subscriptionId,
          productId: sub.productId,
          ...("featureCode" in input
            ? { featureCode: input.featureCode, overrideType: input.type }
            : { limitName: input.limitName, value: input.value }),
        })
        .returning();
      if (!row) throw new Error("override insert returned nothing");
      return {
        result: row,
        audit: [
          {
            action: "subscription.override_added",
            entityType: "subscription",
            entityId: subscriptionId,
            after: row,
          },
        ],
        events: [
          domainEvent("subscription", "override_added", {
            subscriptionId,
            tenantInstanceId: sub.tenantInstanceId,
            overrideId: row.id,
            ...input,
          }),
          ...entitlementsChanged([sub.tenantInstanceId], "subscription.override_added"),
        ],
      };
    });
  } catch (err) {
    if (pgErrorCode(err) === "23505") throw duplicate(subscriptionId, input, err);
    throw err;
  }
}

export async function removeOverride(
  ctx: ServiceContext,
  subscriptionId: string,
  overrideId: string,
  ifMatch: IfMatch,
): Promise<void> {
  await mutate(ctx, async (tx) => {
    const sub = await subscriptionHead(tx, subscriptionId);
    if (!sub) throw notFound("Subscription", subscriptionId);
    await assertInstanceLive(tx, sub.tenantInstanceId, "its overrides cannot change");
    // Un PUT de features aún sin aplicar volvería a crear la fila borrada: el borrado, más nuevo,
    // se perdería. Se pide esperar a que el worker termine esa tarea.
    await refuseWhileFeaturesPending(tx, sub.tenantInstanceId, "remove the override");
    // Bloqueado: apply_overrides del worker cambia el valor con el mismo id; así If-Match se
    // compara con el valor vigente y un DELETE viejo no borra uno que el cliente nunca vio.
    const entity = `Override of subscription ${subscriptionId}`;
    const [row] = await tx
      .select()
      .from(subscriptionFeatureOverrides)
      .where(
        and(
          eq(subscriptionFeatureOverrides.id, overrideId),
          eq(subscriptionFeatureOverrides.subscriptionId, subscriptionId),
        ),
      )
      .for("update");
    if (!row) throw notFound(entity, overrideId);
    assertVersion(row.rowVersion, ifMatch, entity, overrideId);
    await tx
      .delete(subscriptionFeatureOverrides)
      .where(eq(subscriptionFeatureOverrides.id, overrideId));
    return {
      result: undefined,
      audit: [
        {
          action: "subscription.override_removed",
          entityType: "subscription",
          entityId: subscriptionId,
          before: row,
        },
      ],
      events: [
        domainEvent("subscription", "override_removed", {
          subscriptionId,
          tenantInstanceId: sub.tenantInstanceId,
          overrideId,
          featureCode: row.featureCode,
          limitName: row.limitName,
        }),
        ...entitlementsChanged([sub.tenantInstanceId], "subscription.override_removed"),
      ],
    };
  });
}
