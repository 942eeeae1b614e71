import { eq, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { pgConstraint, pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import { features, modules, productLimits, products, webhookEndpoints } from "../../db/schema";
import type { Executor } from "../../db/types";
import { assertUpdated, assertVersion, type IfMatch, notFound } from "./concurrency";
import { domainEvent, mutate, type ServiceContext } from "./mutation";
import { webhookDeleted } from "./webhooks";

export interface ProductInput {
  code: string;
  name: string;
  description: string;
  version: string;
  limits: { name: string; description: string }[];
}

export async function loadProduct(db: Executor, id: string) {
  const [product] = await db.select().from(products).where(eq(products.id, id));
  if (!product) return undefined;
  const limits = await db.select().from(productLimits).where(eq(productLimits.productId, id));
  return { product, limits };
}

function duplicateCode(code: string, cause?: unknown): AppError {
  return new AppError("conflict", `A product with code ${code} already exists`, {
    cause,
    fields: [{ path: "body.code", message: "Already used by another product" }],
  });
}

function duplicateLimit(name: string, cause?: unknown): AppError {
  return new AppError("conflict", `The product already has a limit named ${name}`, {
    cause,
    fields: [{ path: "body.name", message: "Already defined for this product" }],
  });
}

export async function createProduct(ctx: ServiceContext, input: ProductInput) {
  try {
    return await mutate(ctx, async (tx) => {
      const [product] = await tx
        .insert(products)
        .values({
          id: newId(),
          code: input.code,
          name: input.name,
          description: input.description,
          version: input.version,
        })
        .returning();
      if (!product) throw new Error("product insert returned nothing");
      // max_users existe siempre: es el MaxUsers de cada plan.
      const limits = [
        { name: "max_users", description: "Usuarios máximos" },
        ...input.limits.filter((l) => l.name !== "max_users"),
      ];
      const limitRows = await tx
        .insert(productLimits)
        .values(limits.map((l) => ({ productId: product.id, ...l })))
        .returning();
      return {
        result: { product, limits: limitRows },
        audit: [
          {
            action: "product.created",
            entityType: "product",
            entityId: product.id,
            after: { ...product, limits },
          },
        ],
        events: [domainEvent("product", "created", { productId: product.id, code: product.code })],
      };
    });
  } catch (err) {
    // La restricción única decide (también entre dos altas simultáneas): 409 que nombra el campo.
    if (pgErrorCode(err) === "23505" && pgConstraint(err) === "products_code_unique") {
      throw duplicateCode(input.code, err);
    }
    throw err;
  }
}

export async function updateProduct(
  ctx: ServiceContext,
  id: string,
  input: { name?: string; description?: string; version?: string },
  ifMatch: IfMatch,
) {
  return mutate(ctx, async (tx) => {
    // Bloqueada: una edición que confirme entre la lectura y el UPDATE dejaría `before` falso en
    // la auditoría; así espera, y If-Match se compara con la versión vigente.
    const [before] = await tx.select().from(products).where(eq(products.id, id)).for("update");
    if (!before) throw notFound("Product", id);
    assertVersion(before.rowVersion, ifMatch, "Product", id);
    const [product] = await tx
      .update(products)
      .set({ ...input, rowVersion: sql`${products.rowVersion} + 1`, updatedAt: sql`now()` })
      .where(eq(products.id, id))
      .returning();
    const updated = assertUpdated(product, true, "Product", id);
    const limits = await tx.select().from(productLimits).where(eq(productLimits.productId, id));
    return {
      result: { product: updated, limits },
      audit: [
        {
          action: "product.updated",
          entityType: "product",
          entityId: id,
          before,
          after: updated,
        },
      ],
      events: [domainEvent("product", "updated", { productId: id })],
    };
  });
}

export async function deleteProduct(ctx: ServiceContext, id: string, ifMatch: IfMatch) {
  try {
    await mutate(ctx, async (tx) => {
      // Bloqueada: una edición concurrente no puede cambiarla entre la comprobación de If-Match
      // y el borrado (sin el bloqueo, el DELETE borraba igual con una versión ya vieja).
      const [locked] = await tx.select().from(products).where(eq(products.id, id)).for("update");
      if (!locked) throw notFound("Product", id);
      assertVersion(locked.rowVersion, ifMatch, "Product", id);
      // El borrado arrastra límites, módulos y features (ON DELETE CASCADE): quedan en la
      // auditoría y cada módulo avisa como si se hubiera borrado solo.
      const limits = await tx.select().from(productLimits).where(eq(productLimits.productId, id));
      const ownedModules = await tx
        .select()
        .from(modules)
        .where(eq(modules.productId, id))
        .orderBy(modules.code);
      const ownedFeatures = await tx
        .select()
        .from(features)
        .where(eq(features.productId, id))
        .orderBy(features.code);
      const featuresOf = (moduleId: string) => ownedFeatures.filter((f) => f.moduleId === moduleId);
      // Sus webhooks también caen en cascada, pero son configuración del producto como los
      // módulos (no entidades con vida propia como planes e instancias, que dan 409): se borran
      // con la misma auditoría y evento que por su ruta. Bloqueados: un PATCH no se cruza.
      const ownedWebhooks = await tx
        .select()
        .from(webhookEndpoints)
        .where(eq(webhookEndpoints.productId, id))
        .orderBy(webhookEndpoints.id)
        .for("update");
      const webhooksGone = ownedWebhooks.map(webhookDeleted);
      await tx.delete(products).where(eq(products.id, id));
      return {
        result: undefined,
        audit: [
          {
            action: "product.deleted",
            entityType: "product",
            entityId: id,
            before: { ...locked, limits, modules: ownedModules.map((m) => m.code) },
          },
          ...ownedModules.map((m) => ({
            action: "module.deleted",
            entityType: "module",
            entityId: m.id,
            before: { ...m, features: featuresOf(m.id) },
          })),
          ...webhooksGone.map((w) => w.audit),
        ],
        events: [
          ...ownedModules.map((m) =>
            domainEvent("module", "deleted", {
              moduleId: m.id,
              productId: id,
              code: m.code,
              featureCodes: featuresOf(m.id).map((f) => f.code),
            }),
          ),
          ...webhooksGone.map((w) => w.event),
          domainEvent("product", "deleted", { productId: id, code: locked.code }),
        ],
      };
    });
  } catch (err) {
    if (pgErrorCode(err) === "23503") {
      throw new AppError(
        "conflict",
        "The product still has plans or tenant instances; remove them first",
        { cause: err },
      );
    }
    throw err;
  }
}

export async function addProductLimit(
  ctx: ServiceContext,
  productId: string,
  limit: { name: string; description: string },
) {
  try {
    return await mutate(ctx, async (tx) => {
      // Los límites son parte del producto que devuelve el GET: su versión (ETag) cambia con ellos.
      const [product] = await tx
        .update(products)
        .set({ rowVersion: sql`${products.rowVersion} + 1`, updatedAt: sql`now()` })
        .where(eq(products.id, productId))
        .returning();
      if (!product) throw notFound("Product", productId);
      const existing = await loadProduct(tx, productId);
      const [row] = await tx
        .insert(productLimits)
        .values({ productId, ...limit })
        .returning();
      return {
        result: { product, limits: [...(existing?.limits ?? []), ...(row ? [row] : [])] },
        audit: [
          {
            action: "product.limit_added",
            entityType: "product",
            entityId: productId,
            after: limit,
          },
        ],
        events: [domainEvent("product", "limit_added", { productId, limit: limit.name })],
      };
    });
  } catch (err) {
    // Nombre ya usado en el producto (max_users siempre lo está): la clave primaria decide.
    if (pgErrorCode(err) === "23505" && pgConstraint(err) === "product_limits_product_id_name_pk") {
      throw duplicateLimit(limit.name, err);
    }
    throw err;
  }
}
