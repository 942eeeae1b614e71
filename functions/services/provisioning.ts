import { and, eq, inArray, isNull } from "drizzle-orm";
import { subjects } from "../../contracts/streams";
import { AppError } from "../../core/errors";
import { pgConstraint, pgErrorCode } from "../../core/http/db-errors";
import { canonicalJson, newId, sha256Hex } from "../../core/ids";
import { kubernetesNamespaceFor, subdomainUrlFor, tenantCodeFor } from "../../core/tenancy";
import { writeAudit } from "../../db/audit";
import { enqueueEvent, publishQueued } from "../../db/outbox";
import {
  customers,
  features,
  plans,
  productLimits,
  products,
  provisioningTasks,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import type { Database, Executor } from "../../db/types";
import type { ProvisionRequest, ProvisionResponse } from "../routes/provisioning/schema";
import type { ServiceContext } from "./mutation";

type OverrideRow = typeof subscriptionFeatureOverrides.$inferInsert;

/** Traduce customFeatures a overrides; códigos desconocidos son un 422 que los nombra. */
export async function overridesFromCustomFeatures(
  tx: Executor,
  productId: string,
  custom: Record<string, boolean | number>,
  fieldPrefix = "body.customFeatures",
): Promise<Omit<OverrideRow, "subscriptionId">[]> {
  const entries = Object.entries(custom);
  if (entries.length === 0) return [];
  const featureCodes = entries
    .filter(([, v]) => typeof v === "boolean")
    .map(([k]) => k.toUpperCase());
  const limitNames = entries.filter(([, v]) => typeof v === "number").map(([k]) => k.toLowerCase());
  const knownFeatures = new Set(
    featureCodes.length === 0
      ? []
      : (
          await tx
            .select({ code: features.code })
            .from(features)
            .where(and(eq(features.productId, productId), inArray(features.code, featureCodes)))
        ).map((r) => r.code),
  );
  const knownLimits = new Set(
    limitNames.length === 0
      ? []
      : (
          await tx
            .select({ name: productLimits.name })
            .from(productLimits)
            .where(
              and(eq(productLimits.productId, productId), inArray(productLimits.name, limitNames)),
            )
        ).map((r) => r.name),
  );
  const unknown = entries
    .filter(([k, v]) =>
      typeof v === "boolean"
        ? !knownFeatures.has(k.toUpperCase())
        : !knownLimits.has(k.toLowerCase()),
    )
    .map(([k]) => k);
  if (unknown.length > 0) {
    throw new AppError(
      "unprocessable",
      `Unknown feature codes or limit names for this product: ${unknown.join(", ")}`,
      {
        fields: unknown.map((k) => ({
          path: `${fieldPrefix}.${k}`,
          message: "Unknown feature code or limit name",
        })),
        extra: { unknownCodes: unknown },
      },
    );
  }
  return entries.map(([k, v]) =>
    typeof v === "boolean"
      ? {
          id: newId(),
          productId,
          featureCode: k.toUpperCase(),
          overrideType: v ? "enable" : "disable",
        }
      : { id: newId(), productId, limitName: k.toLowerCase(), value: v },
  );
}

async function existingByCorrelation(
  db: Database,
  correlationId: string,
  requestHash: string,
): Promise<ProvisionResponse | undefined> {
  const [task] = await db
    .select({ requestHash: provisioningTasks.requestHash, response: provisioningTasks.response })
    .from(provisioningTasks)
    .where(eq(provisioningTasks.correlationId, correlationId));
  if (!task) return undefined;
  if (task.requestHash !== requestHash) {
    throw new AppError(
      "unprocessable",
      "This correlationId was already used for a different request",
      {
        fields: [{ path: "body.correlationId", message: "Already used with another body" }],
      },
    );
  }
  return task.response as ProvisionResponse;
}

export interface ProvisionResult {
  response: ProvisionResponse;
  replayed: boolean;
}

export async function provisionTenant(
  ctx: ServiceContext,
  input: ProvisionRequest,
): Promise<ProvisionResult> {
  const { correlationId: explicit, ...request } = input;
  const correlationId = explicit ?? newId();
  const requestHash = await sha256Hex(canonicalJson(request));

  const previous = await existingByCorrelation(ctx.db, correlationId, requestHash);
  if (previous) return { response: previous, replayed: true };

  const tenantInstanceId = newId();
  const taskId = newId();
  try {
    const { response, queued } = await ctx.db.transaction(async (tx) => {
      const [customer] = await tx
        .select({ id: customers.id, legalName: customers.legalName, isActive: customers.isActive })
        .from(customers)
        .where(and(eq(customers.id, input.customerId), isNull(customers.deletedAt)));
      if (!customer) {
        throw new AppError("not_found", `Customer ${input.customerId} does not exist`, {
          fields: [{ path: "body.customerId", message: "Unknown customer" }],
        });
      }
      if (!customer.isActive) throw new AppError("unprocessable", "The customer is not active");
      const [product] = await tx
        .select({ id: products.id, code: products.code })
        .from(products)
        .where(eq(products.id, input.productId));
      if (!product) {
        throw new AppError("not_found", `Product ${input.productId} does not exist`, {
          fields: [{ path: "body.productId", message: "Unknown product" }],
        });
      }
      const [plan] = await tx
        .select({ id: plans.id, productId: plans.productId, code: plans.code })
        .from(plans)
        .where(eq(plans.id, input.planId));
      if (!plan) {
        throw new AppError("not_found", `Plan ${input.planId} does not exist`, {
          fields: [{ path: "body.planId", message: "Unknown plan" }],
        });
      }
      if (plan.productId !== product.id) {
        throw new AppError("unprocessable", `Plan ${plan.code} belongs to another product`, {
          fields: [{ path: "body.planId", message: "Plan and product must match" }],
        });
      }
      const overrides = await overridesFromCustomFeatures(tx, product.id, input.customFeatures);

      const tenantCode = tenantCodeFor(customer.legalName, input.instanceCode, tenantInstanceId);
      const [instance] = await tx
        .insert(tenantInstances)
        .values({
          id: tenantInstanceId,
          customerId: customer.id,
          productId: product.id,
          instanceCode: input.instanceCode,
          tenantCode,
          environment: input.environment,
          databaseTier: input.databaseTier,
          status: "provisioning",
          kubernetesNamespace: kubernetesNamespaceFor(tenantCode),
          subdomainUrl: subdomainUrlFor(customer.legalName, input.instanceCode, ctx.baseDomain),
        })
        .returning();
      if (!instance) throw new Error("instance insert returned nothing");
      const subscriptionId = newId();
      await tx.insert(subscriptions).values({
        id: subscriptionId,
        customerId: customer.id,
        tenantInstanceId,
        planId: plan.id,
        productId: product.id,
        status: "pending",
      });
      if (overrides.length > 0) {
        await tx
          .insert(subscriptionFeatureOverrides)
          .values(overrides.map((o) => ({ ...o, subscriptionId })));
      }
      const response: ProvisionResponse = {
        tenantInstanceId,
        tenantCode,
        status: "provisioning",
        taskId,
        createdAt: instance.createdAt.toISOString(),
      };
      await tx.insert(provisioningTasks).values({
        id: taskId,
        tenantInstanceId,
        kind: "provision",
        status: "queued",
        correlationId,
        requestHash,
        response,
      });
      const queued = await enqueueEvent(tx, {
        subject: subjects.provision,
        type: "provisioning.requested",
        correlationId,
        data: { taskId, tenantInstanceId, kind: "provision" },
      });
      await writeAudit(tx, {
        actor: ctx.actor,
        action: "tenant_instance.provision_requested",
        entityType: "tenant_instance",
        entityId: tenantInstanceId,
        after: {
          ...instance,
          subscriptionId,
          planCode: plan.code,
          overrides: input.customFeatures,
        },
        correlationId,
      });
      return { response, queued };
    });
    ctx.logger.info({ tenantInstanceId, taskId, correlationId }, "tenant provisioning accepted");
    await publishQueued(ctx.db, await ctx.bus.get(), [queued], ctx.logger);
    return { response, replayed: false };
  } catch (err) {
    // Dos peticiones simultáneas con el mismo correlationId: gana una, la otra devuelve su respuesta
    // (la perdedora puede chocar antes con el código de instancia que con el correlationId).
    if (pgErrorCode(err) === "23505") {
      const winner = await existingByCorrelation(ctx.db, correlationId, requestHash);
      if (winner) return { response: winner, replayed: true };
    }
    if (pgErrorCode(err) === "23505" && pgConstraint(err) === "tenant_instances_customer_code_uq") {
      throw new AppError(
        "conflict",
        `The customer already has an instance with code ${input.instanceCode}`,
        {
          cause: err,
          fields: [{ path: "body.instanceCode", message: "Already used by this customer" }],
        },
      );
    }
    throw err;
  }
}
