import { randomToken } from "../../core/ids";
import { hashSecret } from "../../core/secret-hash";
import { apiClients } from "../../db/schema";
import type { Database } from "../../db/types";

export interface ClientSpec {
  kind: "admin" | "tenant";
  roles: string[];
  customerId?: string;
  instanceIds?: string[];
}

/** Crea un cliente OAuth con secreto aleatorio (guardado como hash) y devuelve sus credenciales. */
export async function createApiClient(
  db: Database,
  spec: ClientSpec,
): Promise<{ id: string; secret: string }> {
  const id = `test-${randomToken(6)}`;
  const secret = randomToken(24);
  await db.insert(apiClients).values({
    clientId: id,
    secretHash: await hashSecret(secret),
    name: id,
    kind: spec.kind,
    roles: spec.roles,
    customerId: spec.customerId ?? null,
    instanceIds: spec.instanceIds ?? [],
  });
  return { id, secret };
}
