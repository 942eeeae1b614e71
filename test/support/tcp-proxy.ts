import { createServer, type Socket, connect as tcpConnect } from "node:net";

export interface TcpProxy {
  port: number;
  /** Conexiones aceptadas hasta ahora. */
  connections(): number;
  /** Deja de reenviar lo que manda el cliente (un enlace mudo, sin RST): lo retiene. */
  hold(): void;
  /** Reenvía lo retenido y sigue reenviando. */
  release(): void;
  /** Corta las conexiones abiertas y rechaza las nuevas (un Postgres que se reinicia). */
  down(): void;
  /** Vuelve a aceptar conexiones. */
  up(): void;
  close(): Promise<void>;
}

/**
 * Proxy TCP hacia 127.0.0.1:`targetPort` para simular la red: `delayMs` retrasa cada trozo en
 * ambos sentidos (en orden: los temporizadores del mismo plazo se disparan en orden) y `hold()`
 * enmudece el sentido cliente → servidor, como una partición que no corta la conexión.
 */
export async function startTcpProxy(
  targetPort: number,
  options: { delayMs?: number } = {},
): Promise<TcpProxy> {
  const delayMs = options.delayMs ?? 0;
  let holding = false;
  let refusing = false;
  const held: { to: Socket; chunk: Buffer }[] = [];
  const sockets = new Set<Socket>();
  let accepted = 0;
  const forward = (to: Socket, chunk: Buffer) => {
    const write = () => to.writable && to.write(chunk);
    if (delayMs > 0) setTimeout(write, delayMs);
    else write();
  };
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    accepted++;
    const upstream = tcpConnect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    client.on("data", (chunk) => {
      if (holding) held.push({ to: upstream, chunk });
      else forward(upstream, chunk);
    });
    upstream.on("data", (chunk) => forward(client, chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", () => (delayMs > 0 ? setTimeout(end, delayMs) : end()));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("proxy has no port");
  return {
    port: address.port,
    connections: () => accepted,
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const { to, chunk } of held.splice(0)) forward(to, chunk);
    },
    down() {
      refusing = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    up() {
      refusing = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
