import { and, eq, inArray, sql } from "drizzle-orm";
import { AppError, type FieldError } from "../../core/errors";
import { pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import {
  features,
  planFeatures,
  planLimits,
  plans,
  productLimits,
  subscriptionPlanPeriods,
  subscriptions,
} from "../../db/schema";
import type { Executor } from "../../db/types";
import { assertUpdated, assertVersion, type IfMatch, notFound } from "./concurrency";
import { entitlementsChanged, instancesOnPlans } from "./entitlement-events";

import { productExists } from "./modules";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

export type PlanRow = typeof plans.$inferSelect;
export type PlanTier = PlanRow["tier"];

export interface PlanDetails {
  plan: PlanRow;
  includedFeatures: string[];
  limits: Record<string, number>;
}

export interface PlanInput {
  productId: string;
  code: string;
  name: string;
  tier: PlanTier;
  price: string;
  currency: string;
  maxUsers: number;
  includedFeatures: string[];
  limits: Record<string, number>;
}

export interface PlanChanges {
  name?: string;
  price?: string;
  currency?: string;
  maxUsers?: number;
  includedFeatures?: string[];
  limits?: Record<string, number>;
}

// max_users no va en limits: es la columna maxUsers del plan (y así lo lee el edge).
const IMPLICIT_LIMIT = "max_users";

const sortedUnique = (codes: readonly string[]) => [...new Set(codes)].sort();

function sortedLimits(limits: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(limits).sort(([a], [b]) => a.localeCompare(b)));
}

/** Features y límites de varios planes con dos consultas fijas (sin N+1). */
export async function planDetails(db: Executor, rows: PlanRow[]): Promise<PlanDetails[]> {
  const ids = rows.map((r) => r.id);
  const [featureRows, limitRows] =
    ids.length === 0
      ? [[], []]
      : await Promise.all([
          db
            .select({ planId: planFeatures.planId, code: planFeatures.featureCode })
            .from(planFeatures)
            .where(inArray(planFeatures.planId, ids)),
          db
            .select({
              planId: planLimits.planId,
              name: planLimits.limitName,
              value: planLimits.value,
            })
            .from(planLimits)
            .where(inArray(planLimits.planId, ids)),
        ]);
  return rows.map((plan) => ({
    plan,
    includedFeatures: sortedUnique(
      featureRows.filter((f) => f.planId === plan.id).map((f) => f.code),
    ),
    limits: sortedLimits(
      Object.fromEntries(
        limitRows.filter((l) => l.planId === plan.id).map((l) => [l.name, l.value]),
      ),
    ),
  }));
}

export async function loadPlan(db: Executor, id: string): Promise<PlanDetails | undefined> {
  const [plan] = await db.select().from(plans).where(eq(plans.id, id));
  return plan ? (await planDetails(db, [plan]))[0] : undefined;
}

export async function loadPlanByCode(db: Executor, code: string): Promise<PlanDetails | undefined> {
  const [plan] = await db.select().from(plans).where(eq(plans.code, code));
  return plan ? (await planDetails(db, [plan]))[0] : undefined;
}

/**
 * Las features y límites del plan deben existir en su producto: los desconocidos (o de otro
 * producto) son un 422 que los nombra, igual que customFeatures en provisioning.
 */
async function assertCatalogRefs(
  tx: Executor,
  productId: string,
  includedFeatures: readonly string[] | undefined,
  limits: Record<string, number> | undefined,
): Promise<void> {
  if (limits && IMPLICIT_LIMIT in limits) {
    throw new AppError("unprocessable", "max_users is implicit in every plan: use maxUsers", {
      fields: [{ path: `body.limits.${IMPLICIT_LIMIT}`, message: "Use maxUsers instead" }],
    });
  }
  const codes = sortedUnique(includedFeatures ?? []);
  const names = Object.keys(limits ?? {}).sort();
  const [knownFeatures, knownLimits] = await Promise.all([
    codes.length === 0
      ? []
      : tx
          .select({ code: features.code })
          .from(features)
          .where(and(eq(features.productId, productId), inArray(features.code, codes))),
    names.length === 0
      ? []
      : tx
          .select({ name: productLimits.name })
          .from(productLimits)
          .where(and(eq(productLimits.productId, productId), inArray(productLimits.name, names))),
  ]);
  const featureSet = new Set(knownFeatures.map((f) => f.code));
  const limitSet = new Set(knownLimits.map((l) => l.name));
  const unknownFeatures = codes.filter((c) => !featureSet.has(c));
  const unknownLimits = names.filter((n) => !limitSet.has(n));
  if (unknownFeatures.length === 0 && unknownLimits.length === 0) return;
  const fields: FieldError[] = [
    ...(unknownFeatures.length > 0
      ? [
          {
            path: "body.includedFeatures",
            message: `Unknown feature codes for this product: ${unknownFeatures.join(", ")}`,
          },
        ]
      : []),
    ...unknownLimits.map((n) => ({
      path: `body.limits.${n}`,
      message: "Unknown limit name for this product",
    })),
  ];
  const unknown = [...unknownFeatures, ...unknownLimits];
  throw new AppError(
    "unprocessable",
    `Unknown feature codes or limit names for this product: ${unknown.join(", ")}`,
    { fields, extra: { unknownCodes: unknown } },
  );
}

async function writeFeatures(tx: Executor, plan: PlanRow, codes: readonly string[]) {
  if (codes.length === 0) return;
  await tx
    .insert(planFeatures)
    .values(
      codes.map((featureCode) => ({ planId: plan.id, productId: plan.productId, featureCode })),
    );
}

async function writeLimits(tx: Executor, plan: PlanRow, limits: Record<string, number>) {
  const entries = Object.entries(limits);
  if (entries.length === 0) return;
  await tx.insert(planLimits).values(
    entries.map(([limitName, value]) => ({
      planId: plan.id,
      productId: plan.productId,
      limitName,
      value,
    })),
  );
}

function duplicateCode(code: string, cause?: unknown): AppError {
  return new AppError("conflict", `A plan with code ${code} already exists`, {
    cause,
    fields: [{ path: "body.code", message: "Already used" }],
  });
}

function auditView(d: PlanDetails) {
  return { ...d.plan, includedFeatures: d.includedFeatures, limits: d.limits };
}

export async function createPlan(ctx: ServiceContext, input: PlanInput): Promise<PlanDetails> {
  try {
    return await mutate(ctx, async (tx) => {
      if (!(await productExists(tx, input.productId))) {
        throw new AppError("not_found", `Product ${input.productId} does not exist`, {
          fields: [{ path: "body.productId", message: "Unknown product" }],
        });
      }
      const [clash] = await tx
        .select({ id: plans.id })
        .from(plans)
        .where(eq(plans.code, input.code));
      if (clash) throw duplicateCode(input.code);
      await assertCatalogRefs(tx, input.productId, input.includedFeatures, input.limits);
      const { includedFeatures, limits, ...columns } = input;
      const [plan] = await tx
        .insert(plans)
        .values({ id: newId(), ...columns })
        .returning();
      if (!plan) throw new Error("plan insert returned nothing");
      const details: PlanDetails = {
        plan,
        includedFeatures: sortedUnique(includedFeatures),
        limits: sortedLimits(limits),
      };
      await writeFeatures(tx, plan, details.includedFeatures);
      await writeLimits(tx, plan, details.limits);
      return {
        result: details,
        audit: [
          {
            action: "plan.created",
            entityType: "plan",
            entityId: plan.id,
            after: auditView(details),
          },
        ],
        events: [
          domainEvent("plan", "created", {
            planId: plan.id,
            productId: plan.productId,
            code: plan.code,
            tier: plan.tier,
          }),
        ],
      };
    });
  } catch (err) {
    // Dos altas simultáneas con el mismo código: la restricción única decide.
    if (pgErrorCode(err) === "23505") throw duplicateCode(input.code, err);
    throw err;
  }
}

const sameFeatures = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((code, i) => code === b[i]);

const sameLimits = (a: Record<string, number>, b: Record<string, number>) =>
  JSON.stringify(sortedLimits(a)) === JSON.stringify(sortedLimits(b));

/**
 * Modifica un plan. Features y límites reemplazan el conjunto completo; si cambia lo que el plan
 * permite (features, límites o maxUsers) cada instancia suscrita recibe entitlements.changed.
 */
export async function updatePlan(
  ctx: ServiceContext,
  id: string,
  input: PlanChanges,
  ifMatch: IfMatch,
): Promise<PlanDetails> {
  return mutate(ctx, async (tx) => {
    // Bloqueo de la fila: dos PATCH simultáneos no intercalan el reemplazo de features y límites.
    const [locked] = await tx.select().from(plans).where(eq(plans.id, id)).for("update");
    if (!locked) throw notFound("Plan", id);
    assertVersion(locked.rowVersion, ifMatch, "Plan", id);
    const [before] = await planDetails(tx, [locked]);
    if (!before) throw notFound("Plan", id);
    await assertCatalogRefs(tx, locked.productId, input.includedFeatures, input.limits);

    const { includedFeatures, limits, ...columns } = input;
    const [row] = await tx
      .update(plans)
      .set({ ...columns, rowVersion: sql`${plans.rowVersion} + 1`, updatedAt: sql`now()` })
      .where(eq(plans.id, id))
      .returning();
    const plan = assertUpdated(row, true, "Plan", id);
    const after: PlanDetails = {
      plan,
      includedFeatures:
        includedFeatures === undefined ? before.includedFeatures : sortedUnique(includedFeatures),
      limits: limits === undefined ? before.limits : sortedLimits(limits),
    };
    const featuresChanged = !sameFeatures(before.includedFeatures, after.includedFeatures);
    const limitsChanged = !sameLimits(before.limits, after.limits);
    if (featuresChanged) {
      await tx.delete(planFeatures).where(eq(planFeatures.planId, id));
      await writeFeatures(tx, plan, after.includedFeatures);
    }
    if (limitsChanged) {
      await tx.delete(planLimits).where(eq(planLimits.planId, id));
      await writeLimits(tx, plan, after.limits);
    }
    const entitlementsAltered =
      featuresChanged || limitsChanged || before.plan.maxUsers !== plan.maxUsers;
    const instanceIds = entitlementsAltered ? await instancesOnPlans(tx, [id]) : [];
    return {
      result: after,
      audit: [
        {
          action: "plan.updated",
          entityType: "plan",
          entityId: id,
          before: auditView(before),
          after: auditView(after),
        },
      ],
      events: [
        domainEvent("plan", "updated", {
          planId: id,
          code: plan.code,
          entitlementsChanged: entitlementsAltered,
          affectedInstances: instanceIds.length,
        }),
        ...entitlementsChanged(instanceIds, "plan_updated"),
      ],
    };
  });
}

export async function deletePlan(ctx: ServiceContext, id: string, ifMatch: IfMatch) {
  try {
    await mutate(ctx, async (tx) => {
      const [locked] = await tx.select().from(plans).where(eq(plans.id, id)).for("update");
      if (!locked) throw notFound("Plan", id);
      assertVersion(locked.rowVersion, ifMatch, "Plan", id);
      const [usage] = await tx
        .select({ count: sql<number>`count(*)::int` })
        .from(subscriptions)
        .where(eq(subscriptions.planId, id));
      const subscribed = Number(usage?.count ?? 0);
      if (subscribed > 0) {
        throw new AppError(
          "conflict",
          `Plan ${locked.code} still has ${subscribed} subscription(s); move them to another plan first`,
          { extra: { subscriptions: subscribed } },
        );
      }
      // La facturación cobra cada mes con el plan que la suscripción tenía al cerrarlo: un plan que
      // alguna tuvo queda en su historia (y en sus facturas) y no se borra.
      const [used] = await tx
        .select({
          count: sql<number>`count(distinct ${subscriptionPlanPeriods.subscriptionId})::int`,
        })
        .from(subscriptionPlanPeriods)
        .where(eq(subscriptionPlanPeriods.planId, id));
      const usedBy = Number(used?.count ?? 0);
      if (usedBy > 0) {
        throw new AppError(
          "conflict",
          `Plan ${locked.code} was used by ${usedBy} subscription(s) and stays in their billing history; it cannot be deleted`,
          { extra: { historicalSubscriptions: usedBy } },
        );
      }
      const [before] = await planDetails(tx, [locked]);
      // plan_features y plan_limits caen en cascada.
      await tx.delete(plans).where(eq(plans.id, id));
      return {
        result: undefined,
        audit: [
          {
            action: "plan.deleted",
            entityType: "plan",
            entityId: id,
            before: before ? auditView(before) : locked,
          },
        ],
        events: [
          domainEvent("plan", "deleted", {
            planId: id,
            productId: locked.productId,
            code: locked.code,
          }),
        ],
      };
    });
  } catch (err) {
    // Una suscripción creada entre la comprobación y el borrado: la FK lo impide.
    if (pgErrorCode(err) === "23503") {
      throw new AppError(
        "conflict",
        "The plan is still referenced by subscriptions or their history",
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}
