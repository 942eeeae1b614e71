import type { AccessClaims } from "../../core/auth/tokens";
import type { ApiClient } from "./client-auth";

/**
 * Claims del access token, leídos de la fila del cliente en cada emisión (también al refrescar).
 * Un cliente de tenant ve solo las instancias de su lista: una lista vacía no da ninguna (antes
 * daba todas las de su cliente, de cualquier producto; la API siempre crea la lista con una).
 */
export function claimsForClient(client: ApiClient): AccessClaims {
  return {
    sub: client.clientId,
    tenant_id: client.customerId,
    instance_ids: client.instanceIds,
    roles: client.roles,
  };
}
