import { and, eq, inArray, isNull, type SQLWrapper, sql } from "drizzle-orm";
import { subjects } from "../../contracts/streams";
import { AppError } from "../../core/errors";
import { pgConstraint, pgErrorCode } from "../../core/http/db-errors";
import { canonicalJson, newId, sha256Hex } from "../../core/ids";
import { kubernetesNamespaceFor, subdomainUrlFor, tenantCodeFor } from "../../core/tenancy";
import { auditInsert } from "../../db/audit";
import { executeAll } from "../../db/batch";
import { clockMs } from "../../db/clock";
import { outboxInsert, publishQueued } from "../../db/outbox";
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
import { confirmIdempotencyReservation, type ServiceContext } from "./mutation";

type OverrideRow = typeof subscriptionFeatureOverrides.$inferInsert;

/**
 * Normaliza las claves (FEATURE_CODE en mayúsculas, limit_name en minúsculas); dos claves que
 * colapsan en la misma (`max_users` y `MAX_USERS`) son un 400 que las nombra, no un 409 de la base.
 */
export function normalizeFeatureMap(
  features: Record<string, boolean | number>,
  fieldPrefix: string,
): Record<string, boolean | number> {
  const out: Record<string, boolean | number> = {};
  const duplicated: string[] = [];
  for (const [key, value] of Object.entries(features)) {
    const normalized = typeof value === "boolean" ? key.toUpperCase() : key.toLowerCase();
    // Object.hasOwn y no `in`: un límite llamado `constructor` no es un duplicado.
    if (Object.hasOwn(out, normalized)) duplicated.push(key);
    out[normalized] = value;
  }
  if (duplicated.length > 0) {
    throw new AppError("validation_failed", "Some keys name the same feature or limit twice", {
      fields: duplicated.map((k) => ({ path: `${fieldPrefix}.${k}`, message: "Duplicated key" })),
    });
  }
  return out;
}

/**
 * Las features del mapa que el producto tiene, en orden de código (el mismo en que las bloquea el
 * borrado de un módulo: sin deadlock entre ambos).
 */
function knownFeaturesQuery(tx: Executor, productId: string, codes: string[]) {
  return tx
    .select({ code: features.code })
    .from(features)
    .where(and(eq(features.productId, productId), inArray(features.code, codes)))
    .orderBy(features.code);
}

/** Traduce customFeatures a overrides; códigos desconocidos son un 422 que los nombra. */
export async function overridesFromCustomFeatures(
  tx: Executor,
  productId: string,
  custom: Record<string, boolean | number>,
  fieldPrefix = "body.customFeatures",
  options: { lockFeatures?: boolean } = {},
): Promise<Omit<OverrideRow, "subscriptionId">[]> {
  normalizeFeatureMap(custom, fieldPrefix);
  const entries = Object.entries(custom);
  if (entries.length === 0) return [];
  const featureCodes = entries
    .filter(([, v]) => typeof v === "boolean")
    .map(([k]) => k.toUpperCase());
  const limitNames = entries.filter(([, v]) => typeof v === "number").map(([k]) => k.toLowerCase());
  const knownFeatures = new Set(
    featureCodes.length === 0
      ? []
      : (options.lockFeatures
          ? await knownFeaturesQuery(tx, productId, featureCodes).for("share")
          : await knownFeaturesQuery(tx, productId, featureCodes)
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
    .where(
      and(
        eq(provisioningTasks.correlationId, correlationId),
        eq(provisioningTasks.kind, "provision"),
      ),
    );
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

/** Cliente, producto y plan de la petición en una sola consulta (null donde no existen). */
async function provisionReferences(db: Database, input: ProvisionRequest) {
  const [refs] = await db
    .select({
      customerId: customers.id,
      legalName: customers.legalName,
      isActive: customers.isActive,
      productId: products.id,
      productCode: products.code,
      planId: plans.id,
      planProductId: plans.productId,
      planCode: plans.code,
      // El reloj de la base en el mismo viaje: created_at no sale del reloj del host (ver abajo).
      databaseNowMs: clockMs().mapWith(Number),
    })
    .from(sql`(select 1) as probe`)
    .leftJoin(customers, and(eq(customers.id, input.customerId), isNull(customers.deletedAt)))
    .leftJoin(products, eq(products.id, input.productId))
    .leftJoin(plans, eq(plans.id, input.planId));
  if (!refs?.customerId || refs.legalName === null) {
    throw new AppError("not_found", `Customer ${input.customerId} does not exist`, {
      fields: [{ path: "body.customerId", message: "Unknown customer" }],
    });
  }
  if (!refs.isActive) throw new AppError("unprocessable", "The customer is not active");
  if (!refs.productId || !refs.productCode) {
    throw new AppError("not_found", `Product ${input.productId} does not exist`, {
      fields: [{ path: "body.productId", message: "Unknown product" }],
    });
  }
  if (!refs.planId || !refs.planCode) {
    throw new AppError("not_found", `Plan ${input.planId} does not exist`, {
      fields: [{ path: "body.planId", message: "Unknown plan" }],
    });
  }
  if (refs.planProductId !== refs.productId) {
    throw new AppError("unprocessable", `Plan ${refs.planCode} belongs to another product`, {
      fields: [{ path: "body.planId", message: "Plan and product must match" }],
    });
  }
  return {
    customer: { id: refs.customerId, legalName: refs.legalName },
    product: { id: refs.productId, code: refs.productCode },
    plan: { id: refs.planId, code: refs.planCode },
    databaseNow: new Date(refs.databaseNowMs),
  };
}

export async function provisionTenant(
  ctx: ServiceContext,
  input: ProvisionRequest,
): Promise<ProvisionResult> {
  const { correlationId: explicit, ...request } = input;
  const correlationId = explicit ?? newId();
  const requestHash = await sha256Hex(canonicalJson(request));

  const tenantInstanceId = newId();
  const taskId = newId();
  try {
    const { customer, product, plan, databaseNow } = await provisionReferences(ctx.db, input);
    const overrides = await overridesFromCustomFeatures(ctx.db, product.id, input.customFeatures);

    // Ruta caliente: todas las filas (instancia, suscripción, overrides, tarea, outbox y
    // auditoría) en una sola sentencia atómica; un viaje a la base en lugar de diez. La hora es la
    // de la base, como la de toda otra fila: con la del host (reloj desparejo) las instancias
    // quedaban fuera de orden en las listas, que paginan por created_at.
    const now = databaseNow;
    const tenantCode = tenantCodeFor(customer.legalName, input.instanceCode, tenantInstanceId);
    const instance = {
      id: tenantInstanceId,
      customerId: customer.id,
      productId: product.id,
      instanceCode: input.instanceCode,
      tenantCode,
      environment: input.environment,
      databaseTier: input.databaseTier,
      status: "provisioning" as const,
      kubernetesNamespace: kubernetesNamespaceFor(tenantCode),
      subdomainUrl: subdomainUrlFor(customer.legalName, input.instanceCode, ctx.baseDomain),
      createdAt: now,
      updatedAt: now,
    };
    const subscriptionId = newId();
    const response: ProvisionResponse = {
      tenantInstanceId,
      tenantCode,
      status: "provisioning",
      taskId,
      createdAt: now.toISOString(),
    };
    const event = outboxInsert(ctx.db, [
      {
        subject: subjects.provision,
        type: "provisioning.requested",
        correlationId,
        data: { taskId, tenantInstanceId, kind: "provision" },
      },
    ]);
    // Sin Idempotency-Key, una sola sentencia (atómica por sí misma); con ella, en una
    // transacción que además marca la reserva confirmada (ver confirmIdempotencyReservation).
    const { idempotency } = ctx;
    const inTransaction = (statements: SQLWrapper[]) =>
      idempotency
        ? ctx.db.transaction(async (tx) => {
            await executeAll(tx, statements);
            await confirmIdempotencyReservation(tx, idempotency);
          })
        : executeAll(ctx.db, statements);
    const write = () =>
      inTransaction([
        ctx.db.insert(tenantInstances).values(instance),
        ctx.db.insert(subscriptions).values({
          id: subscriptionId,
          customerId: customer.id,
          tenantInstanceId,
          planId: plan.id,
          productId: product.id,
          status: "pending",
        }),
        ...(overrides.length > 0
          ? [
              ctx.db
                .insert(subscriptionFeatureOverrides)
                .values(overrides.map((o) => ({ ...o, subscriptionId }))),
            ]
          : []),
        ctx.db.insert(provisioningTasks).values({
          id: taskId,
          tenantInstanceId,
          kind: "provision",
          status: "queued",
          correlationId,
          requestHash,
          response,
        }),
        event.statement,
        auditInsert(ctx.db, [
          {
            actor: ctx.actor,
            action: "tenant_instance.provision_requested",
            entityType: "tenant_instance",
            entityId: tenantInstanceId,
            after: {
              ...instance,
              rowVersion: 1,
              connectionStringEncrypted: null,
              encryptionKeyId: null,
              subscriptionId,
              planCode: plan.code,
              overrides: input.customFeatures,
            },
            correlationId,
          },
        ]),
      ]);
    try {
      await write();
    } catch (err) {
      // Subdominio ya usado por otro tenant (slugs iguales): se distingue con el id y se reintenta.
      if (pgErrorCode(err) !== "23505" || pgConstraint(err) !== "tenant_instances_subdomain_uq") {
        throw err;
      }
      instance.subdomainUrl = subdomainUrlFor(
        customer.legalName,
        input.instanceCode,
        ctx.baseDomain,
        tenantInstanceId,
      );
      await write();
    }
    // El logger de la petición ya lleva su correlationId (el de la cabecera o el requestId): el de
    // la tarea, el que siguen los workers, va con otro nombre para no repetir la clave.
    ctx.logger.info(
      { tenantInstanceId, taskId, taskCorrelationId: correlationId },
      "tenant provisioning accepted",
    );
    await publishQueued(ctx.db, await ctx.bus.get(), event.queued, ctx.logger);
    return { response, replayed: false };
  } catch (err) {
    // Un correlationId ya usado repite su respuesta aunque algo haya cambiado después.
    if (explicit && err instanceof AppError) {
      const previous = await existingByCorrelation(ctx.db, correlationId, requestHash);
      if (previous) return { response: previous, replayed: true };
    }
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
