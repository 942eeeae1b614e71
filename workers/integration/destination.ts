import { type LookupAddress, lookup } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { Agent, fetch as undiciFetch } from "undici";

// Un webhook lo registra un operador, pero lo entrega el worker desde dentro de la red (VPC,
// clúster): sin este filtro una URL apuntaría a la metadata de la nube, a NATS o a Postgres, y el
// resultado de cada entrega (en la DLQ) revelaría qué puertos internos responden.

const blocked = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8], // "esta red"
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // CGNAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local y metadata de la nube
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reservada y broadcast
] as const) {
  blocked.addSubnet(network, prefix, "ipv4");
}
for (const [network, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["64:ff9b::", 96], // NAT64: una IPv4 cualquiera detrás
  ["2001:db8::", 32],
  ["2002::", 16], // 6to4: otra IPv4 embebida
  ["fc00::", 7], // ULA
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
] as const) {
  blocked.addSubnet(network, prefix, "ipv6");
}

/** La IPv4 de una IPv6 "::ffff:a.b.c.d" (en cualquier escritura), o undefined. */
function mappedIpv4(address: string): string | undefined {
  // La forma canónica comprimida: "::ffff:127.0.0.1" y "0:0:0:0:0:ffff:7f00:1" dan "::ffff:7f00:1".
  const canonical = new URL(`http://[${address}]`).hostname.slice(1, -1);
  const match = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!match) return undefined;
  const [hi, lo] = [Number.parseInt(match[1] ?? "", 16), Number.parseInt(match[2] ?? "", 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Dirección de red privada, local o reservada (no es un destino de webhook). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, "ipv4");
  if (family !== 6) return true;
  const ipv4 = mappedIpv4(address);
  return ipv4 ? blocked.check(ipv4, "ipv4") : blocked.check(address, "ipv6");
}

export class BlockedDestinationError extends Error {
  override name = "BlockedDestinationError";
  constructor(readonly host: string) {
    super(`${host} resolves to a private or reserved address`);
  }
}

/**
 * Resuelve como dns.lookup y falla si alguna dirección es privada: la conexión usa la dirección
 * comprobada, así que un DNS que cambia entre la comprobación y la conexión no la esquiva.
 */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  lookup(hostname, { ...options, all: true }, (err, addresses) => {
    const list = (addresses ?? []) as LookupAddress[];
    if (err) return callback(err, list);
    if (list.length === 0 || list.some((a) => isPrivateAddress(a.address))) {
      return callback(new BlockedDestinationError(hostname), list);
    }
    if (options.all) return callback(null, list);
    const [first] = list as [LookupAddress];
    return callback(null, first.address, first.family);
  });
};

let publicAgent: Agent | undefined;

/** fetch para webhooks: solo destinos públicos salvo `allowPrivate` (desarrollo y pruebas). */
export function webhookFetch(allowPrivate: boolean): typeof fetch {
  if (allowPrivate) return fetch;
  publicAgent ??= new Agent({ connect: { lookup: publicOnlyLookup } });
  const dispatcher = publicAgent;
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : input);
    // Una IP literal no pasa por lookup: se comprueba aquí.
    const host = url.hostname.replace(/^\[|\]$/g, "");
    if (isIP(host) && isPrivateAddress(host)) throw new BlockedDestinationError(host);
    return undiciFetch(url, { ...(init as object), dispatcher });
  }) as typeof fetch;
}

/** El fallo (o una de sus causas) es un destino bloqueado. */
export function isBlockedDestination(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e instanceof BlockedDestinationError) return true;
  }
  return false;
}
