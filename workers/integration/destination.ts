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
  ["64:ff9b:1::", 48], // NAT64 de uso local (RFC 8215)
  ["100::", 64], // descarte
  ["2001::", 32], // Teredo: una IPv4 ofuscada
  ["2001:2::", 48], // benchmarking
  ["2001:10::", 28], // ORCHID
  ["2001:20::", 28], // ORCHIDv2
  ["2001:db8::", 32],
  ["3fff::", 20], // documentación
  ["fc00::", 7], // ULA
  ["fec0::", 10], // site-local (obsoleta)
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
] as const) {
  blocked.addSubnet(network, prefix, "ipv6");
}

/** Los 8 grupos de 16 bits de una IPv6 (ya validada con isIP). */
function ipv6Groups(address: string): number[] {
  // La forma canónica comprimida ("::ffff:127.0.0.1" queda "::ffff:7f00:1"): solo hex y "::".
  const canonical = new URL(`http://[${address}]`).hostname.slice(1, -1);
  const [head = "", tail] = canonical.split("::");
  const parse = (part: string) => (part ? part.split(":").map((g) => Number.parseInt(g, 16)) : []);
  const [left, right] = [parse(head), parse(tail ?? "")];
  const zeros = tail === undefined ? [] : Array<number>(8 - left.length - right.length).fill(0);
  return [...left, ...zeros, ...right];
}

/**
 * La IPv4 que lleva dentro una IPv6 que se traduce a IPv4 al conectar: "::ffff:a.b.c.d" (mapeada),
 * "::a.b.c.d" (compatible), SIIT, NAT64 bien conocido (64:ff9b::/96) y 6to4 (2002::/16). Se juzga por
 * esa IPv4: en una red con DNS64 todo destino IPv4 llega como 64:ff9b::…, y los públicos valen.
 */
function embeddedIpv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  const quad = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zero(0, 5) && g[5] === 0xffff) return quad(g[6] ?? 0, g[7] ?? 0);
  // SIIT (::ffff:0:a.b.c.d, RFC 6052/7915).
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return quad(g[6] ?? 0, g[7] ?? 0);
  if (zero(0, 6) && ((g[6] ?? 0) !== 0 || (g[7] ?? 0) > 1)) return quad(g[6] ?? 0, g[7] ?? 0);
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return quad(g[6] ?? 0, g[7] ?? 0);
  if (g[0] === 0x2002) return quad(g[1] ?? 0, g[2] ?? 0);
  return undefined;
}

/** Dirección de red privada, local o reservada (no es un destino de webhook). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, "ipv4");
  if (family !== 6) return true;
  try {
    const ipv4 = embeddedIpv4(address);
    return ipv4 ? blocked.check(ipv4, "ipv4") : blocked.check(address, "ipv6");
  } catch {
    // Algo que no se puede leer (p. ej. con zona, "fe80::1%eth0") no es un destino público.
    return true;
  }
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
