import { eq, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { randomToken } from "../../core/ids";
import { hashSecret } from "../../core/secret-hash";
import { apiClients, tenantInstances } from "../../db/schema";
import type { Tx } from "../../db/types";
import type { ApiClientView } from "../routes/access/schema";
import { assertVersion, type IfMatch, notFound } from "./concurrency";
import { assertCustomerNotDeleted } from "./customers";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

type ClientRow = typeof apiClients.$inferSelect;

export function toApiClient(row: ClientRow): ApiClientView {
  return {
    clientId: row.clientId,
    name: row.name,
    kind: row.kind,
    customerId: row.customerId,
    instanceIds: row.instanceIds,
    roles: row.roles,
    createdAt: row.createdAt.toISOString(),
    revokedAt: row.revokedAt ? row.revokedAt.toISOString() : null,
  };
}

// Lo que se audita y se publica de un cliente: nunca el secreto ni su hash.
function publicFields(row: ClientRow) {
  const { revokedAt: _r, ...view } = toApiClient(row);
  return view;
}

async function insertClient(
  ctx: ServiceContext,
  values: Pick<ClientRow, "name" | "kind" | "customerId" | "instanceIds" | "roles">,
  validate?: (tx: Tx) => Promise<void>,
) {
  // El secreto solo existe en esta respuesta; en la base queda su hash PBKDF2.
  const clientSecret = `fsec_${randomToken(32)}`;
  const clientId = `${values.kind === "admin" ? "adm" : "tnt"}_${randomToken(12)}`;
  const secretHash = await hashSecret(clientSecret);
  const row = await mutate(ctx, async (tx) => {
    await validate?.(tx);
    const [created] = await tx
      .insert(apiClients)
      .values({ ...values, clientId, secretHash })
      .returning();
    if (!created) throw new Error("api client insert returned nothing");
    const view = publicFields(created);
    return {
      result: created,
      audit: [
        { action: "api_client.created", entityType: "api_client", entityId: clientId, after: view },
      ],
      events: [
        domainEvent("api_client", "created", {
          clientId,
          kind: created.kind,
          customerId: created.customerId,
          roles: created.roles,
        }),
      ],
    };
  });
  return { ...publicFields(row), clientSecret };
}

export function createAdminClient(ctx: ServiceContext, input: { name: string; roles: string[] }) {
  return insertClient(ctx, {
    name: input.name,
    kind: "admin",
    customerId: null,
    instanceIds: [],
    roles: input.roles,
  });
}

/** Cliente de una app hija: solo lee la instancia para la que se creó. */
export async function createTenantClient(
  ctx: ServiceContext,
  tenantInstanceId: string,
  input: { name: string },
) {
  const [instance] = await ctx.db
    .select({ customerId: tenantInstances.customerId, status: tenantInstances.status })
    .from(tenantInstances)
    .where(eq(tenantInstances.id, tenantInstanceId));
  if (!instance) throw notFound("Tenant instance", tenantInstanceId);
  return insertClient(
    ctx,
    {
      name: input.name,
      kind: "tenant",
      customerId: instance.customerId,
      instanceIds: [tenantInstanceId],
      roles: ["tenant_app"],
    },
    async (tx) => {
      // El cliente antes que la instancia, en el mismo orden que su borrado (que toma el cliente y
      // luego sus instancias): en el orden opuesto, Postgres abortaba uno de los dos por deadlock.
      await assertCustomerNotDeleted(tx, instance.customerId, "it cannot get new API clients", {
        lock: true,
      });
      // Dentro de la transacción: una baja concurrente no deja credenciales nuevas colgando.
      const [current] = await tx
        .select({ status: tenantInstances.status })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, tenantInstanceId))
        .for("update");
      if (!current) throw notFound("Tenant instance", tenantInstanceId);
      if (current.status === "decommissioned") {
        throw new AppError(
          "conflict",
          `Tenant instance ${tenantInstanceId} is decommissioned; it cannot get new clients`,
          { extra: { currentStatus: current.status } },
        );
      }
    },
  );
}

/** Revoca un cliente; revocar uno ya revocado no cambia nada (DELETE idempotente). */
export async function revokeClient(
  ctx: ServiceContext,
  clientId: string,
  ifMatch: IfMatch,
): Promise<void> {
  await mutate(ctx, async (tx) => {
    // Bloqueado: If-Match se compara con la versión vigente, no con una que cambie antes del UPDATE.
    const [locked] = await tx
      .select({ rowVersion: apiClients.rowVersion, revokedAt: apiClients.revokedAt })
      .from(apiClients)
      .where(eq(apiClients.clientId, clientId))
      .for("update");
    if (!locked) throw notFound("API client", clientId);
    assertVersion(locked.rowVersion, ifMatch, "API client", clientId);
    if (locked.revokedAt) return { result: undefined, audit: [] };
    // row_version la sube el trigger de la tabla (migración 0024).
    const [revoked] = await tx
      .update(apiClients)
      .set({ revokedAt: sql`now()` })
      .where(eq(apiClients.clientId, clientId))
      .returning();
    if (!revoked) throw new Error("api client update returned nothing");
    return {
      result: undefined,
      audit: [
        {
          action: "api_client.revoked",
          entityType: "api_client",
          entityId: clientId,
          before: { revokedAt: null },
          after: { revokedAt: revoked.revokedAt?.toISOString() ?? null },
        },
      ],
      events: [domainEvent("api_client", "revoked", { clientId, kind: revoked.kind })],
    };
  });
}
