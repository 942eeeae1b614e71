import { and, eq, inArray, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { pgConstraint, pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import type { AuditEntry } from "../../db/audit";
import type { NewEvent } from "../../db/outbox";
import { customers, tenantInstances } from "../../db/schema";
import type { Executor } from "../../db/types";
import type {
  CreateCustomerInput,
  CustomerRow,
  UpdateCustomerInput,
} from "../routes/customers/schema";
import { assertUpdated, assertVersion, type IfMatch, notFound } from "./concurrency";
import { entitlementsChanged } from "./entitlement-events";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

type Audit = Omit<AuditEntry, "actor" | "correlationId">;
type Event = Omit<NewEvent, "correlationId">;

export async function loadCustomer(db: Executor, id: string): Promise<CustomerRow | undefined> {
  const [row] = await db.select().from(customers).where(eq(customers.id, id));
  return row;
}

/**
 * Un cliente borrado (GDPR) no recupera acceso: sus instancias no se reactivan, sus suscripciones
 * no vuelven a activarse y no recibe credenciales nuevas. Lectura simple: el borrado lógico bloquea
 * las instancias después que el cliente, así que una carrera termina con la instancia suspendida.
 */
export async function assertCustomerNotDeleted(
  db: Executor,
  customerId: string,
  what: string,
  options: { lock?: boolean } = {},
): Promise<void> {
  const query = db
    .select({ deletedAt: customers.deletedAt })
    .from(customers)
    .where(eq(customers.id, customerId));
  // FOR SHARE: un borrado concurrente espera a que esta transacción termine (y la comprobación
  // vale hasta el commit). Se toma antes que sus instancias, en el orden del borrado.
  const [row] = options.lock ? await query.for("share") : await query;
  if (row?.deletedAt) {
    throw new AppError("conflict", `Customer ${customerId} is deleted; ${what}`, {
      extra: { customerId, customerDeletedAt: row.deletedAt.toISOString() },
    });
  }
}

export async function createCustomer(ctx: ServiceContext, input: CreateCustomerInput) {
  try {
    return await mutate(ctx, async (tx) => {
      const [customer] = await tx
        .insert(customers)
        .values({ id: newId(), ...input })
        .returning();
      if (!customer) throw new Error("customer insert returned nothing");
      return {
        result: customer,
        audit: [
          {
            action: "customer.created",
            entityType: "customer",
            entityId: customer.id,
            after: customer,
          },
        ],
        // Los eventos no llevan datos personales: el borrado GDPR no puede alcanzar al broker.
        events: [
          domainEvent("customer", "created", {
            customerId: customer.id,
            country: customer.country,
          }),
        ],
      };
    });
  } catch (err) {
    if (pgErrorCode(err) === "23505" && pgConstraint(err) === "customers_country_tax_id_key_uq") {
      // El detalle va al log ("request rejected") y el borrado GDPR no alcanza los logs: nombra
      // el campo, nunca el valor.
      throw new AppError(
        "conflict",
        `A customer with the same taxId already exists in ${input.country}`,
        { cause: err, fields: [{ path: "body.taxId", message: "Already used in this country" }] },
      );
    }
    throw err;
  }
}

export async function updateCustomer(
  ctx: ServiceContext,
  id: string,
  input: UpdateCustomerInput,
  ifMatch: IfMatch,
) {
  return mutate(ctx, async (tx) => {
    // Bloqueada: dos PATCH sin If-Match se ordenan en vez de responder 412 al segundo.
    const [before] = await tx.select().from(customers).where(eq(customers.id, id)).for("update");
    if (!before) throw notFound("Customer", id);
    assertVersion(before.rowVersion, ifMatch, "Customer", id);
    if (before.erasedAt) {
      throw new AppError("conflict", `Customer ${id} was erased (GDPR) and cannot be modified`);
    }
    if (before.deletedAt && input.isActive === true) {
      throw new AppError("conflict", `Customer ${id} is deleted and cannot be reactivated`, {
        fields: [{ path: "body.isActive", message: "The customer is deleted" }],
      });
    }
    const [row] = await tx
      .update(customers)
      .set({ ...input, rowVersion: sql`${customers.rowVersion} + 1`, updatedAt: sql`now()` })
      .where(and(eq(customers.id, id), eq(customers.rowVersion, before.rowVersion)))
      .returning();
    const updated = assertUpdated(row, true, "Customer", id);
    return {
      result: updated,
      audit: [
        {
          action: "customer.updated",
          entityType: "customer",
          entityId: id,
          before,
          after: updated,
        },
      ],
      events: [
        domainEvent("customer", "updated", {
          customerId: id,
          changed: Object.keys(input),
          isActive: updated.isActive,
        }),
      ],
    };
  });
}

export interface SoftDeleteOutcome {
  customer: CustomerRow;
  suspendedInstanceIds: string[];
  audit: Audit[];
  events: Event[];
}

/**
 * Borrado lógico dentro de una transacción abierta: marca al cliente y suspende sus instancias
 * (salvo las dadas de baja). La auditoría guarda solo el cambio de estado, sin datos personales.
 */
export async function softDeleteWithin(
  tx: Executor,
  customer: CustomerRow,
): Promise<SoftDeleteOutcome> {
  const [row] = await tx
    .update(customers)
    .set({
      deletedAt: sql`now()`,
      isActive: false,
      rowVersion: sql`${customers.rowVersion} + 1`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(customers.id, customer.id), eq(customers.rowVersion, customer.rowVersion)))
    .returning();
  const deleted = assertUpdated(row, true, "Customer", customer.id);
  const instances = await tx
    .select({ id: tenantInstances.id, status: tenantInstances.status })
    .from(tenantInstances)
    .where(eq(tenantInstances.customerId, customer.id))
    .for("update");
  // Las dadas de baja ya no existen y las ya suspendidas no cambian: no se tocan.
  const toSuspend = instances.filter(
    (i) => i.status !== "decommissioned" && i.status !== "suspended",
  );
  const suspendedIds = toSuspend.map((i) => i.id);
  if (suspendedIds.length > 0) {
    await tx
      .update(tenantInstances)
      .set({
        status: "suspended",
        rowVersion: sql`${tenantInstances.rowVersion} + 1`,
        updatedAt: sql`now()`,
      })
      .where(inArray(tenantInstances.id, suspendedIds));
  }
  return {
    customer: deleted,
    suspendedInstanceIds: suspendedIds,
    audit: [
      {
        action: "customer.deleted",
        entityType: "customer",
        entityId: customer.id,
        before: { isActive: customer.isActive, deletedAt: null },
        after: {
          isActive: false,
          deletedAt: deleted.deletedAt?.toISOString() ?? null,
          suspendedInstanceIds: suspendedIds,
        },
      },
      ...toSuspend.map((i) => ({
        action: "tenant_instance.suspended",
        entityType: "tenant_instance",
        entityId: i.id,
        before: { status: i.status },
        after: { status: "suspended", reason: "customer.deleted" },
      })),
    ],
    events: [
      domainEvent("customer", "deleted", {
        customerId: customer.id,
        suspendedInstanceIds: suspendedIds,
      }),
      ...entitlementsChanged(suspendedIds, "customer.deleted"),
    ],
  };
}

/** DELETE: borrado lógico (GDPR, primer paso). Repetirlo no cambia nada. */
export async function softDeleteCustomer(
  ctx: ServiceContext,
  id: string,
  ifMatch: IfMatch,
): Promise<CustomerRow> {
  return mutate(ctx, async (tx) => {
    const [before] = await tx.select().from(customers).where(eq(customers.id, id)).for("update");
    if (!before) throw notFound("Customer", id);
    assertVersion(before.rowVersion, ifMatch, "Customer", id);
    if (before.deletedAt) return { result: before, audit: [] };
    const outcome = await softDeleteWithin(tx, before);
    return { result: outcome.customer, audit: outcome.audit, events: outcome.events };
  });
}
