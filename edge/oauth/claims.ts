import { eq } from "drizzle-orm";
import type { AccessClaims } from "../../core/auth/tokens";
import { tenantInstances } from "../../db/schema";
import type { Database } from "../../db/types";
import type { ApiClient } from "./client-auth";

/** Claims del access token, leídos de la base en cada emisión (también al refrescar). */
export async function claimsForClient(db: Database, client: ApiClient): Promise<AccessClaims> {
  let instanceIds = client.instanceIds;
  if (client.kind === "tenant" && instanceIds.length === 0 && client.customerId) {
    // Sin lista explícita, un cliente de tenant ve todas las instancias de su cliente.
    const rows = await db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.customerId, client.customerId));
    instanceIds = rows.map((r) => r.id);
  }
  return {
    sub: client.clientId,
    tenant_id: client.customerId,
    instance_ids: instanceIds,
    roles: client.roles,
  };
}
