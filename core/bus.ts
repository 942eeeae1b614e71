import {
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders, wsconnect } from "@nats-io/nats-core";
import type { EventEnvelope } from "../contracts/events";
import { domains, headers, streams } from "../contracts/streams";

export interface BusOptions {
  /** `nats://host:port` (TCP, workers) o `ws://host:port` (WebSocket, funciones y edge). */
  servers: string;
  name: string;
  /** Node 20 no trae WebSocket global: se pasa el de `ws`. */
  webSocket?: unknown;
  user?: string;
  pass?: string;
  token?: string;
}

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm(): Promise<JetStreamManager>;
  publishEvent(subject: string, event: EventEnvelope): Promise<{ seq: number; duplicate: boolean }>;
  close(): Promise<void>;
}

async function connectTransport(options: BusOptions): Promise<NatsConnection> {
  const common = {
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    ...(options.user ? { user: options.user, pass: options.pass } : {}),
    ...(options.token ? { token: options.token } : {}),
  };
  if (/^wss?:\/\//.test(options.servers)) {
    const Ws = (options.webSocket ?? globalThis.WebSocket) as
      | (new (
          url: string,
        ) => WebSocket)
      | undefined;
    if (!Ws)
      throw new Error("No WebSocket implementation available for the NATS WebSocket transport");
    return wsconnect({
      ...common,
      wsFactory: async (url: string) => {
        const socket = new Ws(url);
        return { socket, encrypted: url.startsWith("wss://") };
      },
    });
  }
  // TCP solo en Node (workers); import dinámico para no arrastrarlo a bundles portables.
  const { connect } = await import("@nats-io/transport-node");
  return connect(common);
}

// El único cliente del bus del proyecto.
export async function connectBus(options: BusOptions): Promise<Bus> {
  const nc = await connectTransport(options);
  const js = jetstream(nc);
  return {
    nc,
    js,
    jsm: () => jetstreamManager(nc),
    async publishEvent(subject, event) {
      const h = natsHeaders();
      h.set(headers.eventType, event.type);
      if (event.correlationId) h.set(headers.correlationId, event.correlationId);
      const ack = await js.publish(subject, JSON.stringify(event), {
        msgID: event.id,
        headers: h,
        timeout: 5_000,
      });
      return { seq: ack.seq, duplicate: ack.duplicate };
    },
    async close() {
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}

// Crea o actualiza los streams de los cuatro dominios; idempotente.
export async function ensureStreams(bus: Bus): Promise<void> {
  const jsm = await bus.jsm();
  for (const domain of domains) {
    const spec = streams[domain];
    const config = {
      name: spec.name,
      subjects: [spec.tasksSubject, spec.dlqSubject],
      // Ventana de duplicados: reenvíos del relay con el mismo Nats-Msg-Id se descartan.
      duplicate_window: 2 * 60 * 1_000_000_000,
    };
    try {
      await jsm.streams.info(spec.name);
      await jsm.streams.update(spec.name, config);
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
      await jsm.streams.add(config);
    }
  }
}

function isStreamNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || /stream not found/i.test(e?.message ?? "");
}
