import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { parseAllDocuments } from "yaml";
import { connectBus } from "../../core/bus";
import { findNatsServer } from "../../infra/nats/local-server";
import { waitFor } from "../support/stack";

// El nats.conf del ConfigMap de Kubernetes, tal cual salvo puertos y carpeta, en un nats-server
// real con NATS_TOKEN en su entorno (como lo pone el StatefulSet): exige el token por TCP y por
// WebSocket. NATS JS v3 admite un solo transporte por proceso: WebSocket con el cliente (el de
// las funciones) y TCP con el protocolo a mano.
// Como lo genera infra/k8s/README.md: prefijo y hex. Sin el prefijo, un hex como este
// ("8438e9…") nats-server lo leería como número y no arrancaría.
const TOKEN = "nats_8438e9451f0c2a7d6b3e9f1a0c5d7e2b4a6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f";

describe("the Kubernetes nats.conf", () => {
  let server: ChildProcess | undefined;
  let dir = "";
  let tcpPort = 0;
  let ws = "";

  beforeAll(async () => {
    const [doc] = parseAllDocuments(readFileSync("infra/k8s/nats-configmap.yaml", "utf8"));
    const configMap = doc?.toJS() as { data: { "nats.conf": string } };
    dir = mkdtempSync(join(tmpdir(), "nats-k8s-"));
    const [client, monitor, websocket] = [await getPort(), await getPort(), await getPort()];
    const conf = configMap.data["nats.conf"]
      .replace(/^port: 4222$/m, `port: ${client}\nhost: 127.0.0.1`)
      .replace(/^http_port: 8222$/m, `http_port: ${monitor}`)
      .replace(/port: 8080/, `port: ${websocket}`)
      .replace(/store_dir: "[^"]*"/, `store_dir: "${join(dir, "js")}"`);
    expect(conf).toContain(`port: ${websocket}`);
    writeFileSync(join(dir, "nats.conf"), conf);
    tcpPort = client;
    ws = `ws://127.0.0.1:${websocket}`;
    server = spawn(findNatsServer(), ["-c", join(dir, "nats.conf")], {
      env: { ...process.env, NATS_TOKEN: TOKEN },
      stdio: "ignore",
    });
    await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${monitor}/healthz`).catch(() => undefined);
      return res?.ok ? true : undefined;
    });
  });

  afterAll(() => {
    server?.kill("SIGTERM");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** INFO del servidor y su respuesta a CONNECT + PING con el token dado. */
  const tcpHandshake = (token: string) =>
    new Promise<{ info: string; reply: string }>((resolve, reject) => {
      const socket = connect(tcpPort, "127.0.0.1");
      let text = "";
      let info = "";
      socket.on("data", (chunk) => {
        text += chunk.toString();
        if (!info && text.includes("\r\n")) {
          info = text.slice(0, text.indexOf("\r\n"));
          text = text.slice(info.length + 2);
          const connectOptions = { verbose: false, pedantic: false, auth_token: token };
          socket.write(`CONNECT ${JSON.stringify(connectOptions)}\r\nPING\r\n`);
        } else if (info && /(PONG|-ERR)/.test(text)) {
          socket.destroy();
          resolve({ info, reply: text.trim() });
        }
      });
      socket.on("error", reject);
    });

  it("requires the token over TCP", async () => {
    const good = await tcpHandshake(TOKEN);
    expect(JSON.parse(good.info.replace(/^INFO /, ""))).toMatchObject({ auth_required: true });
    expect(good.reply).toBe("PONG");
    expect((await tcpHandshake("wrong")).reply).toMatch(/^-ERR 'Authorization Violation'/);
  });

  it("requires the token over WebSocket (the functions' transport)", async () => {
    // Node 20 no trae WebSocket global: el paquete ws, como functions/runtime.ts.
    const options = { servers: ws, name: "k8s-auth", webSocket: WebSocket };
    const bus = await connectBus({ ...options, token: TOKEN });
    expect(bus.isConnected()).toBe(true);
    await bus.close();
    await expect(connectBus(options)).rejects.toThrow(/authorization/i);
    await expect(connectBus({ ...options, token: "wrong" })).rejects.toThrow(/authorization/i);
  });
});
