import { and, eq, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import { features, modules, products } from "../../db/schema";
import type { Executor } from "../../db/types";
import { assertUpdated, assertVersion, type IfMatch, notFound } from "./concurrency";
import { entitlementsChanged, instancesOfProduct } from "./entitlement-events";
import { assertFeaturesUnused } from "./features";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

export interface ModuleInput {
  code: string;
  name: string;
  description: string;
}

export async function loadModule(db: Executor, id: string) {
  const [mod] = await db.select().from(modules).where(eq(modules.id, id));
  return mod;
}

export async function productExists(db: Executor, id: string): Promise<boolean> {
  const [row] = await db.select({ id: products.id }).from(products).where(eq(products.id, id));
  return row !== undefined;
}

/** El 404 de una búsqueda por código dentro de un producto: nombra el producto si es lo que falta. */
export async function notFoundByCode(
  db: Executor,
  productId: string,
  entity: string,
  code: string,
): Promise<AppError> {
  return (await productExists(db, productId))
    ? notFound(`${entity} with code`, code)
    : notFound("Product", productId);
}

function duplicateCode(code: string, cause?: unknown): AppError {
  return new AppError("conflict", `The product already has a module with code ${code}`, {
    cause,
    fields: [{ path: "body.code", message: "Already used in this product" }],
  });
}

export async function createModule(ctx: ServiceContext, productId: string, input: ModuleInput) {
  try {
    return await mutate(ctx, async (tx) => {
      if (!(await productExists(tx, productId))) throw notFound("Product", productId);
      const [clash] = await tx
        .select({ id: modules.id })
        .from(modules)
        .where(and(eq(modules.productId, productId), eq(modules.code, input.code)));
      if (clash) throw duplicateCode(input.code);
      const [mod] = await tx
        .insert(modules)
        .values({ id: newId(), productId, ...input })
        .returning();
      if (!mod) throw new Error("module insert returned nothing");
      return {
        result: mod,
        audit: [{ action: "module.created", entityType: "module", entityId: mod.id, after: mod }],
        events: [domainEvent("module", "created", { moduleId: mod.id, productId, code: mod.code })],
      };
    });
  } catch (err) {
    // Dos altas simultáneas con el mismo código: la restricción única decide.
    if (pgErrorCode(err) === "23505") throw duplicateCode(input.code, err);
    throw err;
  }
}

export async function updateModule(
  ctx: ServiceContext,
  id: string,
  input: { name?: string; description?: string },
  ifMatch: IfMatch,
) {
  return mutate(ctx, async (tx) => {
    // Bloqueada: una edición que confirme entre la lectura y el UPDATE dejaría `before` falso en
    // la auditoría; así espera, y If-Match se compara con la versión vigente.
    const [before] = await tx.select().from(modules).where(eq(modules.id, id)).for("update");
    if (!before) throw notFound("Module", id);
    assertVersion(before.rowVersion, ifMatch, "Module", id);
    const [mod] = await tx
      .update(modules)
      .set({ ...input, rowVersion: sql`${modules.rowVersion} + 1`, updatedAt: sql`now()` })
      .where(eq(modules.id, id))
      .returning();
    const updated = assertUpdated(mod, true, "Module", id);
    return {
      result: updated,
      audit: [
        { action: "module.updated", entityType: "module", entityId: id, before, after: updated },
      ],
      events: [domainEvent("module", "updated", { moduleId: id, code: updated.code })],
    };
  });
}

/** Borra el módulo y, en cascada, sus features; nunca si alguna está en un plan o un override. */
export async function deleteModule(ctx: ServiceContext, id: string, ifMatch: IfMatch) {
  try {
    await mutate(ctx, async (tx) => {
      const [before] = await tx.select().from(modules).where(eq(modules.id, id)).for("update");
      if (!before) throw notFound("Module", id);
      assertVersion(before.rowVersion, ifMatch, "Module", id);
      // Bloqueadas antes de mirar si se usan: un PUT de features que las valida espera o se ve.
      // En orden de código, como las bloquea un PUT de features: sin deadlock entre ambos.
      const owned = await tx
        .select()
        .from(features)
        .where(eq(features.moduleId, id))
        .orderBy(features.code)
        .for("update");
      const codes = owned.map((f) => f.code).sort();
      await assertFeaturesUnused(tx, before.productId, codes, `Module ${before.code}`);
      await tx.delete(modules).where(eq(modules.id, id));
      return {
        result: undefined,
        audit: [
          {
            action: "module.deleted",
            entityType: "module",
            entityId: id,
            before: { ...before, features: owned },
          },
        ],
        events: [
          domainEvent("module", "deleted", {
            moduleId: id,
            productId: before.productId,
            code: before.code,
            featureCodes: codes,
          }),
          ...(codes.length
            ? entitlementsChanged(await instancesOfProduct(tx, before.productId), "module.deleted")
            : []),
        ],
      };
    });
  } catch (err) {
    // Un plan u override que tomó una de sus features entre la comprobación y el borrado.
    if (pgErrorCode(err) === "23503") {
      throw new AppError(
        "conflict",
        "A feature of the module is still used by a plan or override",
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}
