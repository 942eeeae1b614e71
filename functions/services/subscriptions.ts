import { and, eq, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { pgConstraint, pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import { transactionStart } from "../../db/clock";
import { customers, plans, subscriptions, tenantInstances } from "../../db/schema";
import type { Executor } from "../../db/types";
import { INSTANT_RANGE_MESSAGE, instantInRange } from "../routes/instant";
import type {
  CreateSubscriptionInput,
  SubscriptionRow,
  UpdateSubscriptionInput,
} from "../routes/subscriptions/schema";
import { assertUpdated, assertVersion, type IfMatch, notFound } from "./concurrency";
import { assertCustomerNotDeleted } from "./customers";
import { entitlementsChanged } from "./entitlement-events";
import { domainEvent, mutate, type ServiceContext } from "./mutation";
import { assertInstanceLive } from "./tenant-instances";

export interface LoadedSubscription {
  subscription: SubscriptionRow;
  planCode: string;
}

export async function loadSubscription(
  db: Executor,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<LoadedSubscription | undefined> {
  const query = db
    .select({ subscription: subscriptions, planCode: plans.code })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .where(eq(subscriptions.id, id));
  // Las escrituras bloquean la fila: dos cambios sin If-Match se ordenan en vez de dar 412.
  const [row] = options.forUpdate ? await query.for("update", { of: subscriptions }) : await query;
  return row;
}

/** El plan debe existir (404 que nombra el campo) y ser del producto dado (422). */
async function planOfProduct(tx: Executor, planId: string, productId: string) {
  const [plan] = await tx
    .select({ id: plans.id, code: plans.code, productId: plans.productId })
    .from(plans)
    .where(eq(plans.id, planId));
  if (!plan) {
    throw new AppError("not_found", `Plan ${planId} does not exist`, {
      fields: [{ path: "body.planId", message: "Unknown plan" }],
    });
  }
  if (plan.productId !== productId) {
    throw new AppError(
      "unprocessable",
      `Plan ${plan.code} belongs to another product than the tenant instance`,
      {
        fields: [{ path: "body.planId", message: "Plan and instance must be of the same product" }],
      },
    );
  }
  return plan;
}

function assertPeriod(startsAt: Date, expiresAt: Date | null): void {
  if (expiresAt && expiresAt.getTime() <= startsAt.getTime()) {
    throw new AppError("unprocessable", "expiresAt must be after startsAt", {
      fields: [{ path: "body.expiresAt", message: "Must be after startsAt" }],
    });
  }
}

/**
 * El esquema ya acota los años (functions/routes/instant.ts); se repite aquí porque un año fuera
 * de 1970-9999 en UTC no vuelve igual de Postgres (o lo rechaza con un 500): 400 que nombra el campo.
 */
function toDate(value: string | null | undefined, field: "startsAt" | "expiresAt") {
  if (value === undefined || value === null) return value;
  if (!instantInRange(value)) {
    throw new AppError("validation_failed", `${field} is out of range`, {
      fields: [{ path: `body.${field}`, message: INSTANT_RANGE_MESSAGE }],
    });
  }
  return new Date(value);
}

export async function createSubscription(
  ctx: ServiceContext,
  input: CreateSubscriptionInput,
): Promise<LoadedSubscription> {
  try {
    return await mutate(ctx, async (tx) => {
      const [instance] = await tx
        .select({
          id: tenantInstances.id,
          customerId: tenantInstances.customerId,
          productId: tenantInstances.productId,
          status: tenantInstances.status,
          customerDeletedAt: customers.deletedAt,
        })
        .from(tenantInstances)
        .innerJoin(customers, eq(customers.id, tenantInstances.customerId))
        .where(eq(tenantInstances.id, input.tenantInstanceId));
      if (!instance) {
        throw new AppError(
          "not_found",
          `Tenant instance ${input.tenantInstanceId} does not exist`,
          {
            fields: [{ path: "body.tenantInstanceId", message: "Unknown tenant instance" }],
          },
        );
      }
      if (instance.status === "decommissioned") {
        throw new AppError(
          "unprocessable",
          "A decommissioned tenant instance cannot be subscribed",
          {
            fields: [{ path: "body.tenantInstanceId", message: "Instance is decommissioned" }],
          },
        );
      }
      if (instance.customerDeletedAt) {
        throw new AppError("unprocessable", "The customer of this tenant instance is deleted", {
          fields: [{ path: "body.tenantInstanceId", message: "Customer is deleted" }],
        });
      }
      const plan = await planOfProduct(tx, input.planId, instance.productId);
      const [existing] = await tx
        .select({ id: subscriptions.id })
        .from(subscriptions)
        .where(eq(subscriptions.tenantInstanceId, instance.id));
      if (existing) throw alreadySubscribed(instance.id, existing.id);
      // Sin fecha, la de la base (la de updated_at), no la del host de la API: con un host
      // adelantado, starts_at > updated_at y el mantenimiento avisaría un «empezó» que no hubo.
      const startsAt = toDate(input.startsAt, "startsAt") ?? (await transactionStart(tx));
      const expiresAt = toDate(input.expiresAt, "expiresAt") ?? null;
      assertPeriod(startsAt, expiresAt);
      const [row] = await tx
        .insert(subscriptions)
        .values({
          id: newId(),
          customerId: instance.customerId,
          tenantInstanceId: instance.id,
          planId: plan.id,
          productId: instance.productId,
          status: input.status,
          startsAt,
          expiresAt,
        })
        .returning();
      if (!row) throw new Error("subscription insert returned nothing");
      return {
        result: { subscription: row, planCode: plan.code },
        audit: [
          {
            action: "subscription.created",
            entityType: "subscription",
            entityId: row.id,
            after: { ...row, planCode: plan.code },
          },
        ],
        events: [
          domainEvent("subscription", "created", {
            subscriptionId: row.id,
            tenantInstanceId: row.tenantInstanceId,
            customerId: row.customerId,
            planCode: plan.code,
            status: row.status,
          }),
          ...entitlementsChanged([row.tenantInstanceId], "subscription.created"),
        ],
      };
    });
  } catch (err) {
    // Carrera entre dos altas de la misma instancia: la restricción única decide.
    if (pgErrorCode(err) === "23505" && pgConstraint(err) === "subscriptions_instance_uq") {
      throw alreadySubscribed(input.tenantInstanceId, undefined, err);
    }
    throw err;
  }
}

function alreadySubscribed(instanceId: string, subscriptionId?: string, cause?: unknown) {
  return new AppError(
    "conflict",
    `Tenant instance ${instanceId} already has a subscription${subscriptionId ? ` (${subscriptionId})` : ""}`,
    {
      cause,
      fields: [{ path: "body.tenantInstanceId", message: "Already subscribed" }],
      extra: subscriptionId ? { subscriptionId } : undefined,
    },
  );
}

export async function updateSubscription(
  ctx: ServiceContext,
  id: string,
  input: UpdateSubscriptionInput,
  ifMatch: IfMatch,
): Promise<LoadedSubscription> {
  return mutate(ctx, async (tx) => {
    const before = await loadSubscription(tx, id, { forUpdate: true });
    if (!before) throw notFound("Subscription", id);
    const current = before.subscription;
    assertVersion(current.rowVersion, ifMatch, "Subscription", id);
    await assertInstanceLive(tx, current.tenantInstanceId, "its subscription cannot change");
    if (input.status === "active") {
      await assertCustomerNotDeleted(
        tx,
        current.customerId,
        "its subscription cannot be activated",
      );
    }
    const plan =
      input.planId === undefined
        ? { id: current.planId, code: before.planCode }
        : await planOfProduct(tx, input.planId, current.productId);
    const startsAt = toDate(input.startsAt, "startsAt") ?? current.startsAt;
    const expiresAt =
      input.expiresAt === undefined ? current.expiresAt : toDate(input.expiresAt, "expiresAt");
    assertPeriod(startsAt, expiresAt ?? null);
    const [row] = await tx
      .update(subscriptions)
      .set({
        planId: plan.id,
        status: input.status ?? current.status,
        startsAt,
        expiresAt: expiresAt ?? null,
        rowVersion: sql`${subscriptions.rowVersion} + 1`,
        updatedAt: sql`now()`,
      })
      .where(and(eq(subscriptions.id, id), eq(subscriptions.rowVersion, current.rowVersion)))
      .returning();
    const updated = assertUpdated(row, true, "Subscription", id);
    const changed = Object.entries(input)
      .filter(([, v]) => v !== undefined)
      .map(([k]) => k);
    return {
      result: { subscription: updated, planCode: plan.code },
      audit: [
        {
          action: "subscription.updated",
          entityType: "subscription",
          entityId: id,
          before: { ...current, planCode: before.planCode },
          after: { ...updated, planCode: plan.code },
        },
      ],
      events: [
        domainEvent("subscription", "updated", {
          subscriptionId: id,
          tenantInstanceId: updated.tenantInstanceId,
          changed,
          planCode: plan.code,
          status: updated.status,
        }),
        ...entitlementsChanged([updated.tenantInstanceId], "subscription.updated"),
      ],
    };
  });
}

/** DELETE = cancelar: la fila queda (historia y 1:1 con la instancia). Repetirlo no cambia nada. */
export async function cancelSubscription(
  ctx: ServiceContext,
  id: string,
  ifMatch: IfMatch,
): Promise<LoadedSubscription> {
  return mutate(ctx, async (tx) => {
    const before = await loadSubscription(tx, id, { forUpdate: true });
    if (!before) throw notFound("Subscription", id);
    const current = before.subscription;
    assertVersion(current.rowVersion, ifMatch, "Subscription", id);
    if (current.status === "cancelled") return { result: before, audit: [] };
    const [row] = await tx
      .update(subscriptions)
      .set({
        status: "cancelled",
        rowVersion: sql`${subscriptions.rowVersion} + 1`,
        updatedAt: sql`now()`,
      })
      .where(and(eq(subscriptions.id, id), eq(subscriptions.rowVersion, current.rowVersion)))
      .returning();
    const updated = assertUpdated(row, true, "Subscription", id);
    return {
      result: { subscription: updated, planCode: before.planCode },
      audit: [
        {
          action: "subscription.cancelled",
          entityType: "subscription",
          entityId: id,
          before: { status: current.status },
          after: { status: "cancelled" },
        },
      ],
      events: [
        domainEvent("subscription", "cancelled", {
          subscriptionId: id,
          tenantInstanceId: updated.tenantInstanceId,
        }),
        ...entitlementsChanged([updated.tenantInstanceId], "subscription.cancelled"),
      ],
    };
  });
}
