import {
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders, wsconnect } from "@nats-io/nats-core";
import type { EventEnvelope } from "../contracts/events";
import {
  advisoryStream,
  domains,
  headers,
  streams,
  TASK_MESSAGE_RETENTION_DAYS,
} from "../contracts/streams";
import type { Logger } from "./logger";

export interface BusOptions {
  /** `nats://host:port` (TCP, workers) o `ws://host:port` (WebSocket, funciones y edge). */
  servers: string;
  name: string;
  /** Node 20 no trae WebSocket global: se pasa el de `ws`. */
  webSocket?: unknown;
  user?: string;
  pass?: string;
  token?: string;
  logger?: Logger;
}

export interface Bus {
  nc: NatsConnection;
  /** false mientras la conexión está caída o reconectando. */
  isConnected(): boolean;
  js: JetStreamClient;
  jsm(): Promise<JetStreamManager>;
  publishEvent(subject: string, event: EventEnvelope): Promise<{ seq: number; duplicate: boolean }>;
  close(): Promise<void>;
}

/**
 * Valor de cabecera NATS: sin saltos de línea ni otros caracteres de control, con los que `set`
 * lanza (un correlation id así, de un publicador externo, no llegaría nunca a la DLQ).
 */
export function headerValue(text: string): string {
  let out = "";
  for (const ch of text) out += ch < " " || ch === "\u007f" ? " " : ch;
  return out.replace(/ {2,}/g, " ").slice(0, 500);
}

// NATS JS v3 guarda la fábrica de transporte en una variable global: si un proceso mezcla
// WebSocket y TCP, las reconexiones usan el transporte equivocado y se cuelgan. Se prohíbe.
let processTransport: "ws" | "tcp" | undefined;

export function transportOf(servers: string): "ws" | "tcp" {
  return /^wss?:\/\//.test(servers) ? "ws" : "tcp";
}

async function connectTransport(options: BusOptions): Promise<NatsConnection> {
  const transport = transportOf(options.servers);
  if (processTransport && processTransport !== transport) {
    throw new Error(
      `This process already uses the NATS ${processTransport} transport; NATS JS v3 supports one transport per process`,
    );
  }
  processTransport = transport;
  const common = {
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Un intento de conexión colgado (p. ej. contra un servidor que se está apagando) no bloquea más de 3 s.
    timeout: 3_000,
    // Sin la traza asíncrona que nats.js captura en cada request (cada publicación en JetStream lo
    // es): un Error con su pila por mensaje costaba ~2 % de la CPU del pipeline. Los errores de
    // NATS conservan su mensaje y su código.
    noAsyncTraces: true,
    ...(options.user ? { user: options.user, pass: options.pass } : {}),
    ...(options.token ? { token: options.token } : {}),
  };
  if (transport === "ws") {
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

/**
 * Espera máxima del drain al cerrar el bus: cabe, con el cierre de la base, en el margen de cierre
 * de los workers (CLOSE_BUDGET_MS, 4 s) y en el apagado de la API.
 */
export const BUS_CLOSE_DRAIN_MS = 3_000;

// El único cliente del bus del proyecto.
export async function connectBus(options: BusOptions): Promise<Bus> {
  const nc = await connectTransport(options);
  const js = jetstream(nc);
  let connected = true;
  // Con el broker caído no se espera el timeout de cada publicación: se delega al relay.
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        connected = false;
        options.logger?.warn({ bus: options.name }, "message bus disconnected");
      } else if (s.type === "reconnect") {
        connected = true;
        options.logger?.info({ bus: options.name }, "message bus reconnected");
      }
    }
  })().catch(() => {});
  return {
    nc,
    js,
    isConnected: () => connected && !nc.isClosed(),
    jsm: () => jetstreamManager(nc),
    async publishEvent(subject, event) {
      if (!connected || nc.isClosed()) throw new Error("message bus is disconnected");
      const h = natsHeaders();
      h.set(headers.eventType, headerValue(event.type));
      if (event.correlationId) h.set(headers.correlationId, headerValue(event.correlationId));
      const ack = await js.publish(subject, JSON.stringify(event), {
        msgID: event.id,
        headers: h,
        timeout: 3_000,
      });
      return { seq: ack.seq, duplicate: ack.duplicate };
    },
    async close() {
      if (nc.isClosed()) return;
      // El drain espera la respuesta del servidor: con un enlace mudo no llegaría nunca. Pasado
      // el plazo se cierra sin drenar (lo publicado sin ack sigue en el outbox).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), BUS_CLOSE_DRAIN_MS);
      });
      const drained = await Promise.race([
        nc.drain().then(() => "drained" as const),
        deadline,
      ]).catch(() => "failed" as const);
      clearTimeout(timer);
      if (drained === "late") {
        options.logger?.warn(
          { bus: options.name, drainMs: BUS_CLOSE_DRAIN_MS },
          "message bus did not drain in time; closing it",
        );
      }
      if (!nc.isClosed()) await nc.close().catch(() => {});
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
      max_age: TASK_MESSAGE_RETENTION_DAYS * 86_400 * 1_000_000_000,
    };
    await upsertStream(jsm, config, {
      max_bytes: spec.maxBytes,
      discard: spec.discard === "new" ? DiscardPolicy.New : DiscardPolicy.Old,
    });
  }
  await upsertStream(
    jsm,
    {
      name: advisoryStream.name,
      subjects: domains.map((d) => advisoryStream.subjectFor(streams[d].name, "*")),
      // Un advisory sin atender más de dos semanas ya no tiene mensaje original que recuperar.
      max_age: 14 * 86_400 * 1_000_000_000,
    },
    { max_bytes: advisoryStream.maxBytes, discard: DiscardPolicy.Old },
  );
}

/**
 * Crea el stream, o actualiza lo que el código define. El tope de tamaño (`limits`) se pone al
 * crearlo o si no tiene ninguno: uno que un operador ajustó a mano se respeta.
 */
async function upsertStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
  limits: Pick<StreamConfig, "max_bytes" | "discard">,
): Promise<void> {
  let current: StreamConfig;
  try {
    current = (await jsm.streams.info(config.name)).config;
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
    await jsm.streams.add({ ...config, ...limits });
    return;
  }
  await jsm.streams.update(config.name, current.max_bytes > 0 ? config : { ...config, ...limits });
}

function isStreamNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || /stream not found/i.test(e?.message ?? "");
}
