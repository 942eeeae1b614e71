import { and, eq, inArray, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import {
  features,
  modules,
  planFeatures,
  plans,
  provisioningTasks,
  subscriptionFeatureOverrides,
  tenantInstances,
} from "../../db/schema";
import type { Executor } from "../../db/types";
import { assertUpdated, assertVersion, type IfMatch, notFound } from "./concurrency";
import { entitlementsChanged, instancesOfProduct } from "./entitlement-events";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

export interface FeatureInput {
  code: string;
  name: string;
  description: string;
  isPremium: boolean;
}

export interface FeatureChanges {
  name?: string;
  description?: string;
  isPremium?: boolean;
}

export async function loadFeature(db: Executor, id: string) {
  const [feature] = await db.select().from(features).where(eq(features.id, id));
  return feature;
}

/**
 * Nada en uso desaparece: si algún plan incluye estas features, algún override las nombra o un
 * PUT de features aceptado (tarea aún sin aplicar) las pide, se rechaza el borrado con 409
 * diciendo cuáles y dónde. El PUT bloquea las features que valida (FOR SHARE) y el borrado las
 * toma antes de mirar: no se cruzan.
 */
export async function assertFeaturesUnused(
  tx: Executor,
  productId: string,
  codes: readonly string[],
  what: string,
): Promise<void> {
  if (codes.length === 0) return;
  const [inPlans, inOverrides, inTasks] = await Promise.all([
    tx
      .selectDistinct({ code: planFeatures.featureCode, plan: plans.code })
      .from(planFeatures)
      .innerJoin(plans, eq(plans.id, planFeatures.planId))
      .where(
        and(eq(planFeatures.productId, productId), inArray(planFeatures.featureCode, [...codes])),
      ),
    tx
      .select({
        code: subscriptionFeatureOverrides.featureCode,
        count: sql<number>`count(*)::int`,
      })
      .from(subscriptionFeatureOverrides)
      .where(
        and(
          eq(subscriptionFeatureOverrides.productId, productId),
          inArray(subscriptionFeatureOverrides.featureCode, [...codes]),
        ),
      )
      .groupBy(subscriptionFeatureOverrides.featureCode),
    tx
      .select({ payload: provisioningTasks.payload })
      .from(provisioningTasks)
      .innerJoin(tenantInstances, eq(tenantInstances.id, provisioningTasks.tenantInstanceId))
      .where(
        and(
          eq(tenantInstances.productId, productId),
          eq(provisioningTasks.kind, "update_features"),
          inArray(provisioningTasks.status, ["queued", "running"]),
          sql`${provisioningTasks.payload}->'features' ?| array[${sql.join(
            codes.map((c) => sql`${c}`),
            sql`, `,
          )}]::text[]`,
        ),
      ),
  ]);
  if (inPlans.length === 0 && inOverrides.length === 0 && inTasks.length === 0) return;
  const pendingCodes = inTasks.flatMap((t) =>
    Object.keys((t.payload as { features?: Record<string, unknown> } | null)?.features ?? {}),
  );
  const usedCodes = [
    ...new Set([
      ...inPlans.map((r) => r.code),
      ...inOverrides.flatMap((r) => (r.code ? [r.code] : [])),
      ...pendingCodes.filter((c) => codes.includes(c)),
    ]),
  ].sort();
  const planCodes = [...new Set(inPlans.map((r) => r.plan))].sort();
  const overrides = inOverrides.reduce((n, r) => n + Number(r.count), 0);
  throw new AppError(
    "conflict",
    `${what} is still in use: features ${usedCodes.join(", ")} are included in ` +
      `${planCodes.length} plan(s), used by ${overrides} override(s) or requested by ` +
      `${inTasks.length} feature update(s) not yet applied; remove them first (or wait for the updates)`,
    {
      extra: {
        featuresInUse: usedCodes,
        plans: planCodes,
        overrides,
        pendingTasks: inTasks.length,
      },
    },
  );
}

function duplicateCode(code: string, cause?: unknown): AppError {
  return new AppError("conflict", `The product already has a feature with code ${code}`, {
    cause,
    fields: [{ path: "body.code", message: "Already used in this product" }],
  });
}

export async function createFeature(ctx: ServiceContext, moduleId: string, input: FeatureInput) {
  try {
    return await mutate(ctx, async (tx) => {
      const [mod] = await tx.select().from(modules).where(eq(modules.id, moduleId));
      if (!mod) throw notFound("Module", moduleId);
      const [clash] = await tx
        .select({ id: features.id })
        .from(features)
        .where(and(eq(features.productId, mod.productId), eq(features.code, input.code)));
      if (clash) throw duplicateCode(input.code);
      // El producto sale del módulo; la FK compuesta (module_id, product_id) lo garantiza en la base.
      const [feature] = await tx
        .insert(features)
        .values({ id: newId(), moduleId: mod.id, productId: mod.productId, ...input })
        .returning();
      if (!feature) throw new Error("feature insert returned nothing");
      return {
        result: feature,
        audit: [
          {
            action: "feature.created",
            entityType: "feature",
            entityId: feature.id,
            after: feature,
          },
        ],
        events: [
          domainEvent("feature", "created", {
            featureId: feature.id,
            moduleId: mod.id,
            productId: mod.productId,
            code: feature.code,
          }),
          ...entitlementsChanged(await instancesOfProduct(tx, mod.productId), "feature.created"),
        ],
      };
    });
  } catch (err) {
    // Carrera entre dos altas con el mismo código: la restricción única decide.
    if (pgErrorCode(err) === "23505") throw duplicateCode(input.code, err);
    throw err;
  }
}

export async function updateFeature(
  ctx: ServiceContext,
  id: string,
  input: FeatureChanges,
  ifMatch: IfMatch,
) {
  return mutate(ctx, async (tx) => {
    // Bloqueada: una edición que confirme entre la lectura y el UPDATE dejaría `before` falso en
    // la auditoría; así espera, y If-Match se compara con la versión vigente.
    const [before] = await tx.select().from(features).where(eq(features.id, id)).for("update");
    if (!before) throw notFound("Feature", id);
    assertVersion(before.rowVersion, ifMatch, "Feature", id);
    const [feature] = await tx
      .update(features)
      .set({ ...input, rowVersion: sql`${features.rowVersion} + 1`, updatedAt: sql`now()` })
      .where(eq(features.id, id))
      .returning();
    const updated = assertUpdated(feature, true, "Feature", id);
    return {
      result: updated,
      audit: [
        { action: "feature.updated", entityType: "feature", entityId: id, before, after: updated },
      ],
      events: [domainEvent("feature", "updated", { featureId: id, code: updated.code })],
    };
  });
}

export async function deleteFeature(ctx: ServiceContext, id: string, ifMatch: IfMatch) {
  try {
    await mutate(ctx, async (tx) => {
      const [before] = await tx.select().from(features).where(eq(features.id, id)).for("update");
      if (!before) throw notFound("Feature", id);
      assertVersion(before.rowVersion, ifMatch, "Feature", id);
      await assertFeaturesUnused(tx, before.productId, [before.code], `Feature ${before.code}`);
      await tx.delete(features).where(eq(features.id, id));
      return {
        result: undefined,
        audit: [{ action: "feature.deleted", entityType: "feature", entityId: id, before }],
        events: [
          domainEvent("feature", "deleted", {
            featureId: id,
            productId: before.productId,
            code: before.code,
          }),
          ...entitlementsChanged(await instancesOfProduct(tx, before.productId), "feature.deleted"),
        ],
      };
    });
  } catch (err) {
    // Un plan u override que la tomó entre la comprobación y el borrado: la FK lo impide.
    if (pgErrorCode(err) === "23503") {
      throw new AppError("conflict", "The feature is still used by a plan or an override", {
        cause: err,
      });
    }
    throw err;
  }
}
