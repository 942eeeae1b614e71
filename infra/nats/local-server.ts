import { type ChildProcess, type SpawnOptions, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import getPort from "get-port";
import { spawnTiedToParent } from "../../core/child";

export interface LocalNatsOptions {
  /** Carpeta para la config y el store de JetStream. */
  dataDir: string;
  port?: number;
  wsPort?: number;
  /** Binario; por defecto `nats-server` del PATH (o /usr/sbin). */
  binary?: string;
  /** El servidor terminó sin que lo parara stop() (lo mató alguien, se cayó): su dueño decide. */
  onUnexpectedExit?: (exit: { code: number | null; signal: NodeJS.Signals | null }) => void;
}

export interface LocalNats {
  url: string;
  wsUrl: string;
  port: number;
  wsPort: number;
  stop(): Promise<void>;
  /** Reinicia en los mismos puertos y con el mismo store (pruebas de caída del broker). */
  restart(): Promise<void>;
}

export class NatsServerMissingError extends Error {
  override name = "NatsServerMissingError";
}

export const NATS_INSTALL_HINT =
  "nats-server was not found on the PATH. Install it (Debian/Ubuntu: `apt-get install nats-server`, " +
  "macOS: `brew install nats-server`) or set NATS_URL to an existing server with JetStream and WebSocket.";

export function findNatsServer(binary?: string): string {
  const candidates = binary
    ? [binary]
    : ["nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"];
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ["--version"], { encoding: "utf8" });
    if (probe.status === 0) return candidate;
  }
  throw new NatsServerMissingError(NATS_INSTALL_HINT);
}

async function waitForReady(child: ChildProcess, timeoutMs: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let output = "";
    const timer = setTimeout(
      () => reject(new Error(`nats-server did not start in ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Server is ready")) {
        clearTimeout(timer);
        child.stderr?.off("data", onData);
        resolve();
      }
    };
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with code ${code}:\n${output}`));
    });
  });
}

/** Arranca un nats-server propio con JetStream y WebSocket en puertos libres. */
export async function startLocalNats(options: LocalNatsOptions): Promise<LocalNats> {
  const binary = findNatsServer(options.binary);
  mkdirSync(options.dataDir, { recursive: true });
  const port = options.port ?? (await getPort({ host: "127.0.0.1" }));
  const wsPort = options.wsPort ?? (await getPort({ host: "127.0.0.1" }));
  const configPath = join(options.dataDir, "nats-server.conf");
  writeFileSync(
    configPath,
    [
      "host: 127.0.0.1",
      `port: ${port}`,
      "jetstream {",
      `  store_dir: ${JSON.stringify(join(options.dataDir, "jetstream"))}`,
      "  max_memory_store: 256MB",
      "  max_file_store: 2GB",
      "}",
      "websocket {",
      "  host: 127.0.0.1",
      `  port: ${wsPort}`,
      "  no_tls: true",
      "}",
      "",
    ].join("\n"),
  );
  let child: ChildProcess | undefined;
  // En su propio grupo de procesos: el Ctrl-C de la terminal va a todo el grupo y el servidor
  // moriría antes de que los workers drenen. Lo para su dueño con stop() (o al salir, abajo); si
  // este proceso muere sin limpiar (SIGKILL), el kernel se lo lleva.
  const spawnOptions: SpawnOptions = { stdio: ["ignore", "ignore", "pipe"], detached: true };
  const launch = async () => {
    const proc = spawnTiedToParent(binary, ["-c", configPath], spawnOptions, "SIGKILL");
    child = proc;
    proc.once("exit", (code, signal) => {
      if (child !== proc) return;
      child = undefined;
      options.onUnexpectedExit?.({ code, signal });
    });
    await waitForReady(proc, 10_000);
    // Sin consumir stderr el pipe se llenaría y bloquearía al servidor.
    proc.stderr?.resume();
  };
  const stop = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
      setTimeout(() => proc.kill("SIGKILL"), 5_000).unref();
    });
  };
  await launch();
  process.once("exit", () => child?.kill("SIGKILL"));
  return {
    url: `nats://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${wsPort}`,
    port,
    wsPort,
    stop,
    async restart() {
      await stop();
      await launch();
    },
  };
}
