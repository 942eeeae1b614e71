import { errors } from "@nats-io/nats-core";
import { type Bus, type BusOptions, connectBus, ensureStreams } from "./bus";
import { errorMessage } from "./http/db-errors";
import type { Logger } from "./logger";

export interface BusProvider {
  get(): Promise<Bus | undefined>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
  /** Por qué falló el último intento de conexión, en palabras de operador; undefined si no falló. */
  failure(): BusFailure | undefined;
}

/** Un broker que no contesta y uno que rechaza las credenciales se arreglan distinto. */
export type BusFailure =
  | "not reachable"
  | "refused the credentials"
  | "answered but its JetStream streams could not be set up";

/** NATS contestó pero JetStream no (sin JetStream, recuperando su store, sin permiso, config en conflicto). */
class StreamSetupError extends Error {
  override name = "StreamSetupError";
}

function busFailure(err: unknown): BusFailure {
  if (err instanceof StreamSetupError)
    return "answered but its JetStream streams could not be set up";
  return err instanceof errors.AuthorizationError ||
    err instanceof errors.UserAuthenticationExpiredError
    ? "refused the credentials"
    : "not reachable";
}

/**
 * Un bus ya conectado (o ninguno: los eventos quedan en el outbox y los publica el relay), para
 * usar un servicio de funciones desde un proceso que ya tiene su conexión.
 */
export function fixedBusProvider(bus: Bus | undefined): BusProvider {
  return {
    get: async () => bus,
    ping: async () => bus?.isConnected() ?? false,
    close: async () => {},
    failure: () => undefined,
  };
}

/**
 * Conexión perezosa y compartida al bus. Si el broker no está, devuelve undefined:
 * la escritura ya quedó en el outbox y el relay la publicará.
 */
export function createBusProvider(
  options: BusOptions & { ensureStreams?: boolean; connectTimeoutMs?: number },
  logger: Logger,
): BusProvider {
  let current: Promise<Bus> | undefined;
  let lastFailure = 0;
  let lastError: unknown;
  const connect = async (): Promise<Bus> => {
    const bus = await connectBus({ ...options, logger });
    if (options.ensureStreams) {
      try {
        await ensureStreams(bus);
      } catch (err) {
        // Cada intento abre su conexión: sin cerrarla, quedaría reconectando para siempre.
        await bus.close().catch(() => {});
        throw new StreamSetupError(`JetStream streams could not be set up: ${errorMessage(err)}`, {
          cause: err,
        });
      }
    }
    bus.nc.closed().then(() => {
      current = undefined;
    });
    return bus;
  };
  return {
    async get() {
      if (!current) {
        // Evita martillar un broker caído en cada petición.
        if (Date.now() - lastFailure < 1_000) return undefined;
        current = connect();
      }
      try {
        const bus = await current;
        lastError = undefined;
        return bus;
      } catch (err) {
        logger.warn({ err }, "message bus unavailable");
        current = undefined;
        lastFailure = Date.now();
        lastError = err;
        return undefined;
      }
    },
    async ping() {
      const bus = await this.get();
      if (!bus?.isConnected()) return false;
      try {
        await bus.nc.rtt();
        return true;
      } catch {
        return false;
      }
    },
    failure: () => (lastError === undefined ? undefined : busFailure(lastError)),
    async close() {
      const pending = current;
      current = undefined;
      if (pending) await (await pending.catch(() => undefined))?.close();
    },
  };
}
