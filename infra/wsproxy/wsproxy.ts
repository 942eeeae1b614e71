import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { WebSocketServer } from "ws";

export interface WsProxyOptions {
  host?: string;
  port?: number;
  /** Destinos permitidos (host:port); por defecto solo loopback. */
  allow?: (address: string) => boolean;
}

export interface RunningWsProxy {
  port: number;
  url: string;
  close(): Promise<void>;
}

const loopbackOnly = (address: string) => /^(127\.0\.0\.1|localhost|\[::1\]):\d+$/.test(address);

/**
 * Proxy WebSocket→TCP con el protocolo wsproxy de Neon (`/v1?address=host:port`), para que el
 * driver serverless alcance un Postgres local. Solo pruebas y desarrollo; en la nube lo pone Neon.
 * No hay un paquete npm mantenido que haga esto; son unas pocas líneas sobre `ws`.
 */
export async function startWsProxy(options: WsProxyOptions = {}): Promise<RunningWsProxy> {
  const allow = options.allow ?? loopbackOnly;
  const server: Server = createServer((_req, res) => {
    res.writeHead(426, { "content-type": "text/plain" }).end("WebSocket upgrade required\n");
  });
  const wss = new WebSocketServer({ server, path: "/v1" });
  wss.on("connection", (ws, req) => {
    const address = new URL(req.url ?? "/", "http://proxy").searchParams.get("address") ?? "";
    const match = /^(.+):(\d+)$/.exec(address);
    if (!match?.[1] || !match[2] || !allow(address)) {
      ws.close(1008, "address not allowed");
      return;
    }
    const socket = connect({ host: match[1].replace(/^\[|\]$/g, ""), port: Number(match[2]) });
    const pending: Buffer[] = [];
    let open = false;
    socket.on("connect", () => {
      open = true;
      for (const chunk of pending.splice(0)) socket.write(chunk);
    });
    socket.on("data", (data) => ws.readyState === ws.OPEN && ws.send(data));
    socket.on("close", () => ws.close());
    socket.on("error", () => ws.close(1011, "upstream error"));
    ws.on("message", (data: Buffer) => (open ? socket.write(data) : pending.push(data)));
    ws.on("close", () => socket.destroy());
    ws.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) =>
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve),
  );
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    port,
    url: `${options.host ?? "127.0.0.1"}:${port}`,
    async close() {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
